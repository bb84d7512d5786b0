"""`fasttune chat TARGET`: talk to a run folder, a merged folder or a .gguf with the training template.

Every target renders conversations with the chat template the model was trained with: a run or
merged folder through its tokenizer, a GGUF through the template stored in its metadata (rendered
with the same Jinja engine transformers uses). Two ways to end the prompt:
- a new turn (default): the conversation ends with the generation prompt (`<|im_start|>assistant`),
  and the model writes a fresh reply;
- `--continue TEXT`: the conversation ends inside an assistant message that begins with TEXT, with
  no end-of-turn after it, and the model continues that message.

`--thinking on|off` sets the template's `enable_thinking` switch (Qwen3's; fasttune's thinking
ChatML prefills an empty think block for "off"); a template without the switch refuses it.
"""

from __future__ import annotations

from pathlib import Path

from fasttune import thinking
from fasttune.errors import ConfigError
from fasttune.run_folder import is_run_folder, open_run


class HFChat:
    """A run folder (base model + LoRA adapter, or its fully fine-tuned model/) or a merged HF folder."""

    def __init__(self, target: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if is_run_folder(target):
            self.model, self.tokenizer = open_run(target).load_model(torch.float32)
        else:
            self.model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(target)
        self.template = self.tokenizer.chat_template

    def render(self, messages: list[dict], prefix: str | None, tools: list[dict] | None = None,
               enable_thinking: bool | None = None) -> str:
        switch = thinking.template_kwargs(enable_thinking)
        if prefix is None:
            return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                      add_generation_prompt=True, **switch)
        return self.tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": prefix}],
                                                  tools=tools, tokenize=False, continue_final_message=True, **switch)

    def complete(self, text: str, max_new_tokens: int) -> str:
        from fasttune.generate import generate

        return generate(self.model, self.tokenizer, [text], max_new_tokens, strip=False)[0]


class GGUFChat:
    """A .gguf file run by llama.cpp, its template read from the file."""

    def __init__(self, target: Path):
        from fasttune import gguf_inference

        self.template = gguf_inference.chat_template(target)
        self.llm = gguf_inference.open_model(target)

    def render(self, messages: list[dict], prefix: str | None, tools: list[dict] | None = None,
               enable_thinking: bool | None = None) -> str:
        # transformers' own Jinja renderer, so a GGUF renders exactly as its HF folder did
        from transformers.utils.chat_template_utils import render_jinja_template

        if prefix is not None:
            messages = [*messages, {"role": "assistant", "content": prefix}]
        rendered, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=self.template,
                                            add_generation_prompt=prefix is None,
                                            continue_final_message=prefix is not None,
                                            **thinking.template_kwargs(enable_thinking))
        return rendered[0]

    def complete(self, text: str, max_new_tokens: int) -> str:
        from fasttune.gguf_inference import greedy_continue

        return self.llm.detokenize(greedy_continue(self.llm, text, max_new_tokens)).decode("utf-8", errors="ignore")


def open_target(target: Path, enable_thinking: bool | None = None):
    """The model behind `target`; one whose template has no thinking switch refuses one that is set."""
    if target.suffix.lower() == ".gguf" and target.is_file():
        from fasttune.models import read_gguf

        read_gguf(target, "chat")  # a file that is not a whole GGUF is named, not a llama.cpp traceback
        bot = GGUFChat(target)
    elif target.is_dir():
        bot = HFChat(target)
    else:
        raise ConfigError(f"{target}: not a run folder, a merged model folder or a .gguf file")
    thinking.require_switch(bot.template, enable_thinking, str(target))
    return bot


def ask(target: Path, prompt: str, system: str | None = None, prefix: str | None = None,
        tools: list[dict] | None = None, max_new_tokens: int = 256, thinking_mode: str | bool | None = None) -> str:
    """One answer (`fasttune chat --prompt`, `fasttune.chat`): a new turn, or with `prefix` the
    assistant message that starts with it, continued; `thinking_mode` 'on' / 'off' sets the switch."""
    enabled = thinking.switch(thinking_mode)
    bot = open_target(target, enabled)
    messages = [{"role": "system", "content": system}] if system else []
    text = bot.render([*messages, {"role": "user", "content": prompt}], prefix, tools, enabled)
    answer = bot.complete(text, max_new_tokens)
    return prefix + answer if prefix else answer.strip()


def as_message(answer: str) -> dict:
    """A generated answer as the assistant turn the conversation goes on with: its think block, if
    any, back in `reasoning_content`, so the template renders it as it did in training."""
    thought, final = thinking.split_answer(answer)
    return {"role": "assistant", "content": final, **({thinking.REASONING: thought} if thought is not None else {})}
