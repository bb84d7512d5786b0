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

import json
from pathlib import Path

from fasttune.config import ConfigError


class HFChat:
    """A run folder (base model + LoRA adapter) or a merged HF folder."""

    def __init__(self, target: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from fasttune import models

        if (target / "adapter").is_dir() and (target / "config.json").is_file() and not (target / "model.safetensors").exists():
            from peft import PeftModel

            name = json.loads((target / "config.json").read_text())["model"]["name"]
            base = AutoModelForCausalLM.from_pretrained(models.resolve(name), dtype=torch.float32)
            self.model = PeftModel.from_pretrained(base, target / "adapter").eval()
            self.tokenizer = AutoTokenizer.from_pretrained(target / "adapter")
        else:
            self.model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(target)

    def render(self, messages: list[dict], prefix: str | None) -> str:
        if prefix is None:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": prefix}],
                                                  tokenize=False, continue_final_message=True)

    def complete(self, text: str, max_new_tokens: int) -> str:
        from fasttune.generate import generate

        return generate(self.model, self.tokenizer, [text], max_new_tokens, strip=False)[0]


class GGUFChat:
    """A .gguf file run by llama.cpp (llama-cpp-python), its template read from the file."""

    def __init__(self, target: Path):
        import gguf
        import llama_cpp

        reader = gguf.GGUFReader(target)
        field = reader.fields.get("tokenizer.chat_template")
        if field is None:
            raise ConfigError(f"{target}: the GGUF carries no chat template")
        self.template = bytes(field.parts[field.data[0]]).decode()
        # one thread: with two, llama.cpp on a busy 2-core machine was measured 3-10x slower
        self.llm = llama_cpp.Llama(model_path=str(target), n_ctx=2048, n_threads=1, verbose=False)

    def render(self, messages: list[dict], prefix: str | None) -> str:
        # transformers' own Jinja renderer, so a GGUF renders exactly as its HF folder did
        from transformers.utils.chat_template_utils import render_jinja_template

        if prefix is not None:
            messages = [*messages, {"role": "assistant", "content": prefix}]
        rendered, _ = render_jinja_template(conversations=[messages], chat_template=self.template,
                                            add_generation_prompt=prefix is None,
                                            continue_final_message=prefix is not None)
        return rendered[0]

    def complete(self, text: str, max_new_tokens: int) -> str:
        from fasttune.export.gguf import greedy_continue

        return self.llm.detokenize(greedy_continue(self.llm, text, max_new_tokens)).decode("utf-8", errors="ignore")


def open_target(target: Path):
    if target.suffix.lower() == ".gguf" and target.is_file():
        return GGUFChat(target)
    if target.is_dir():
        return HFChat(target)
    raise ConfigError(f"{target}: not a run folder, a merged model folder or a .gguf file")
