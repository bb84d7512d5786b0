"""`fasttune chat TARGET`: talk to a run folder, a merged folder or a .gguf with the training template.

Every target renders conversations with the chat template the model was trained with: a run or
merged folder through its tokenizer, a GGUF through the template stored in its metadata (rendered
with the same Jinja engine transformers uses). Two ways to end the prompt:
- a new turn (default): the conversation ends with the generation prompt (`<|im_start|>assistant`),
  and the model writes a fresh reply;
- `--continue TEXT`: the conversation ends inside an assistant message that begins with TEXT, with
  no end-of-turn after it, and the model continues that message.
"""

from __future__ import annotations

from pathlib import Path

from fasttune.errors import ConfigError
from fasttune.run_folder import is_run_folder, open_run


class HFChat:
    """A run folder (base model + LoRA adapter) or a merged HF folder."""

    def __init__(self, target: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if is_run_folder(target):
            self.model, self.tokenizer = open_run(target).load_model(torch.float32)
        else:
            self.model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(target)

    def render(self, messages: list[dict], prefix: str | None, tools: list[dict] | None = None) -> str:
        if prefix is None:
            return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                      add_generation_prompt=True)
        return self.tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": prefix}],
                                                  tools=tools, tokenize=False, continue_final_message=True)

    def complete(self, text: str, max_new_tokens: int) -> str:
        from fasttune.generate import generate

        return generate(self.model, self.tokenizer, [text], max_new_tokens, strip=False)[0]


class GGUFChat:
    """A .gguf file run by llama.cpp, its template read from the file."""

    def __init__(self, target: Path):
        from fasttune import gguf_inference

        self.template = gguf_inference.chat_template(target)
        self.llm = gguf_inference.open_model(target)

    def render(self, messages: list[dict], prefix: str | None, tools: list[dict] | None = None) -> str:
        # transformers' own Jinja renderer, so a GGUF renders exactly as its HF folder did
        from transformers.utils.chat_template_utils import render_jinja_template

        if prefix is not None:
            messages = [*messages, {"role": "assistant", "content": prefix}]
        rendered, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=self.template,
                                            add_generation_prompt=prefix is None,
                                            continue_final_message=prefix is not None)
        return rendered[0]

    def complete(self, text: str, max_new_tokens: int) -> str:
        from fasttune.gguf_inference import greedy_continue

        return self.llm.detokenize(greedy_continue(self.llm, text, max_new_tokens)).decode("utf-8", errors="ignore")


def open_target(target: Path):
    if target.suffix.lower() == ".gguf" and target.is_file():
        return GGUFChat(target)
    if target.is_dir():
        return HFChat(target)
    raise ConfigError(f"{target}: not a run folder, a merged model folder or a .gguf file")


def ask(target: Path, prompt: str, system: str | None = None, prefix: str | None = None,
        tools: list[dict] | None = None, max_new_tokens: int = 256) -> str:
    """One answer (`fasttune chat --prompt`, `fasttune.chat`): a new turn, or with `prefix` the
    assistant message that starts with it, continued."""
    bot = open_target(target)
    messages = [{"role": "system", "content": system}] if system else []
    answer = bot.complete(bot.render([*messages, {"role": "user", "content": prompt}], prefix, tools), max_new_tokens)
    return prefix + answer if prefix else answer.strip()
