"""The model behind `fasttune serve`: a target opened as `fasttune chat` opens it, requests rendered
with its renderer (the training template, thinking switch and tools), and one generation at a time.

Loading and rendering are chat.py's (`open_target`, `render`): there is no second renderer. Greedy
generation stops where `fasttune chat` stops (the template's end of turn: generate.py's stop ids for a
folder, llama.cpp's end-of-generation tokens for a GGUF), so a temperature-0 answer over HTTP is the
answer `fasttune chat --prompt` prints. Generation runs in a worker thread and hands text to the event
loop piece by piece; requests wait their turn on a FIFO lock, and a request that goes away sets a flag
the worker reads after every token, so its slot is free within one token.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fasttune import thinking
from fasttune.chat import GGUFChat, open_target
from fasttune.errors import ConfigError, RequestError


@dataclass
class Job:
    """One generation: the prompt's text (rendered, or raw for /v1/completions) and ids, how to sample,
    and what happened (filled in by the worker)."""

    text: str
    ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    completion_tokens: int = 0
    finish_reason: str = "stop"
    cancel: threading.Event = field(default_factory=threading.Event)


class Engine:
    def __init__(self, target: Path, enable_thinking: bool | None = None):
        self.bot = open_target(target, enable_thinking)
        self.gguf = isinstance(self.bot, GGUFChat)
        self.template = self.bot.template
        self.enable_thinking = enable_thinking
        path = target.resolve()
        name = path.stem if self.gguf else path.name
        self.name = f"{path.parent.parent.name}/{name}" if path.parent.name == "export" else name
        """The model id: the folder's or file's name, after its run's name for what `fasttune export` wrote."""
        self.lock = asyncio.Lock()
        self.stats = {"waiting": 0, "generating": 0, "finished": 0, "cancelled": 0}
        if not self.gguf:
            from fasttune.chat_template import end_of_turn_ids

            self.stop_ids = end_of_turn_ids(self.bot.tokenizer)
        self.bot.render([{"role": "user", "content": "x"}], None)  # the renderer imported before /health says ok

    # --- prompts
    def chat_prompt(self, messages: list[dict], tools: list[dict] | None, tool_choice,
                    enable_thinking: bool | None) -> tuple[str, str | None]:
        """(the rendered prompt, the text the answer is made to start with): `tool_choice` 'required' or
        a named function starts the answer inside a `<tool_call>`, the way the template writes calls."""
        enabled = self.enable_thinking if enable_thinking is None else enable_thinking
        try:
            thinking.require_switch(self.template, enabled, self.name)
        except ConfigError as error:
            raise RequestError(str(error), param="chat_template_kwargs") from None
        prefix = None
        if tools and tool_choice == "none":
            tools = None
        elif tools:
            if "tools" not in (self.template or ""):
                raise RequestError(f"{self.name}: its chat template does not render tools; serve a "
                                   "function-calling run", param="tools")
            if tool_choice is not None and tool_choice not in ("auto", "required"):
                prefix = '<tool_call>\n{"name": "%s", "arguments": ' % tool_choice.function.name
            elif tool_choice == "required":
                prefix = "<tool_call>\n"
            if prefix and "<tool_call>" not in self.template:
                raise RequestError(f"{self.name}: tool_choice needs fasttune's <tool_call> template",
                                   param="tool_choice")
        return self.bot.render(messages, prefix, tools, enabled), prefix

    def job(self, text: str, raw: bool, max_tokens: int, temperature: float, top_p: float,
            seed: int | None) -> Job:
        """The prompt tokenized (chat text carries its own special tokens; raw text gets the tokenizer's,
        as generate.py does) and checked against the context, before any answer is streamed."""
        if self.gguf:
            from fasttune.gguf_inference import check_context

            llm = self.bot.llm
            ids = llm.tokenize(text.encode("utf-8"), add_bos=raw, special=True)
            try:
                check_context(llm, len(ids), max_tokens)
            except ConfigError as error:
                raise RequestError(str(error), param="max_tokens") from None
        else:
            ids = self.bot.tokenizer(text, add_special_tokens=raw).input_ids
            context = getattr(self.bot.model.config, "max_position_embeddings", None)
            if context and len(ids) + max_tokens > context:
                raise RequestError(f"prompt ({len(ids)} tokens) + {max_tokens} new tokens exceed the context of "
                                   f"{context} tokens", param="max_tokens")
        return Job(text, ids, max_tokens, temperature, top_p, seed)

    # --- generation
    async def stream(self, job: Job):
        """The answer's text, piece by piece, once this request's turn comes. Closing the generator
        (a client gone, a stop string met) stops the worker; the next request starts when it has."""
        self.stats["waiting"] += 1
        try:
            await self.lock.acquire()
        finally:
            self.stats["waiting"] -= 1
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = object()

        def emit(item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                (self._gguf if self.gguf else self._hf)(job, emit)
            except BaseException as error:  # handed to the request, which raises it
                emit(error)
            finally:
                emit(done)

        def release(_) -> None:
            self.stats["generating"] -= 1
            self.stats["cancelled" if job.finish_reason == "cancelled" else "finished"] += 1
            self.lock.release()

        self.stats["generating"] += 1
        loop.run_in_executor(None, work).add_done_callback(release)
        try:
            while (item := await queue.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancel.set()  # a no-op when the worker has finished

    def _hf(self, job: Job, emit) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        tokenizer, model, stop_ids = self.bot.tokenizer, self.bot.model, self.stop_ids
        decoder = Decoder(lambda ids: tokenizer.decode(ids, skip_special_tokens=True), emit)

        class Streamer(BaseStreamer):
            prompt_seen = False

            def put(self, value):
                if self.prompt_seen:
                    ids = value.flatten().tolist()
                    job.completion_tokens += sum(i not in stop_ids for i in ids)
                    decoder.add(ids)
                self.prompt_seen = True

            def end(self):
                pass

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), job.cancel.is_set(), dtype=torch.bool,
                                  device=input_ids.device)

        sampling = ({"do_sample": True, "temperature": job.temperature, "top_p": job.top_p, "top_k": 0}
                    if job.temperature > 0 else {"do_sample": False})
        if job.seed is not None:
            torch.manual_seed(job.seed)
        device = next(model.parameters()).device
        ids = torch.tensor([job.ids], device=device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=job.max_tokens,
                                 use_cache=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=self.stop_ids,
                                 streamer=Streamer(), stopping_criteria=StoppingCriteriaList([Cancelled()]),
                                 **sampling)
        new = out[0, ids.shape[1]:].tolist()
        ended = bool(new) and new[-1] in stop_ids
        job.finish_reason = "cancelled" if job.cancel.is_set() else "stop" if ended else "length"
        decoder.finish()

    def _gguf(self, job: Job, emit) -> None:
        from fasttune.gguf_inference import continuation

        llm = self.bot.llm
        decoder = Decoder(lambda ids: llm.detokenize(ids).decode("utf-8", errors="ignore"), emit)
        job.finish_reason = "stop"
        for token in continuation(llm, job.ids, job.max_tokens, job.temperature, job.top_p, job.seed):
            if job.cancel.is_set():
                job.finish_reason = "cancelled"
                break
            decoder.add([token])
            job.completion_tokens += 1
        else:
            job.finish_reason = "length" if job.completion_tokens >= job.max_tokens else "stop"
        decoder.finish()


class Decoder:
    """Token ids -> new text, as the whole answer decodes (the decode `fasttune chat` runs), so that the
    pieces join to exactly that text; a character still missing bytes waits for them."""

    def __init__(self, decode, emit):
        self.decode, self.emit, self.ids, self.text = decode, emit, [], ""

    def add(self, ids: list[int]) -> None:
        self.ids += ids
        text = self.decode(self.ids)
        if len(text) > len(self.text) and not text.endswith("\ufffd") and text.startswith(self.text):
            self.emit(text[len(self.text):])
            self.text = text

    def finish(self) -> None:
        text = self.decode(self.ids)
        if text.startswith(self.text) and len(text) > len(self.text):
            self.emit(text[len(self.text):])
            self.text = text
