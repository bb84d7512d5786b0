"""An Ollama Modelfile beside each GGUF, with the template the model was trained with.

A template mismatch after export (garbled or endless output in Ollama) is one of the most reported
fine-tuning problems: Ollama does not run the Jinja chat template, it needs its own Go template.
For ChatML templates (SmolLM2, Qwen, many fine-tunes) fasttune writes the equivalent Go template and
the end-of-turn stop token, plus the default system prompt when the Jinja template inserts one (the
model was trained seeing it). For other templates it says so in the file and leaves Ollama to the
chat template stored in the GGUF metadata.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)


def default_system_prompt(tokenizer) -> str | None:
    """The system message the chat template adds on its own when a conversation has none."""
    probe = "fasttune-probe"
    text = tokenizer.apply_chat_template([{"role": "user", "content": probe}], tokenize=False)
    head = text.split(probe)[0]
    marker = "<|im_start|>system\n"
    if marker not in head:
        return None
    return head.split(marker, 1)[1].split("<|im_end|>", 1)[0]


def write_modelfile(path: Path, gguf_name: str, tokenizer) -> None:
    lines = [f"# Ollama: ollama create my-model -f {path.name}", f"FROM ./{gguf_name}", ""]
    if "<|im_start|>" in (tokenizer.chat_template or ""):
        lines.append(f'TEMPLATE """{CHATML_TEMPLATE}"""')
        system = default_system_prompt(tokenizer)
        if system:
            lines.append(f'SYSTEM """{system}"""')
        lines.append('PARAMETER stop "<|im_end|>"')
    else:
        lines.append("# Not a ChatML template: Ollama uses the chat template stored in the GGUF metadata.")
    path.write_text("\n".join(lines) + "\n")
