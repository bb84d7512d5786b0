"""An Ollama Modelfile beside each GGUF, with the template the model was trained with.

A template mismatch after export (garbled or endless output in Ollama) is one of the most reported
fine-tuning problems: Ollama does not run the Jinja chat template, it needs its own Go template.
For ChatML templates (SmolLM2, Qwen, many fine-tunes) fasttune writes the equivalent Go template and
the end-of-turn stop token, plus the default system prompt when the Jinja template inserts one (the
model was trained seeing it). For other templates it says so in the file and leaves Ollama to the
chat template stored in the GGUF metadata.

A ChatML template that renders reasoning (fasttune's thinking ChatML) gets the Go template with
Ollama's thinking fields, written as training wrote them: an assistant message's `.Thinking` in a
"<think>\n…\n</think>\n\n" block before its answer, and with thinking switched off (`ollama run
--think=false`, `"think": false`) the empty think block prefilled after the generation prompt.
"""

from __future__ import annotations

from pathlib import Path

from fasttune.run_folder import write_text
from fasttune.thinking import takes_reasoning

CHATML_TEMPLATE = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)

THINK_CHATML_TEMPLATE = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    '{{ if and (eq .Role "assistant") .Thinking }}<think>\n{{ .Thinking }}\n</think>\n\n{{ end }}'
    "{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
    "{{ if and $.IsThinkSet (not $.Think) }}<think>\n\n</think>\n\n{{ end }}"
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
        template = THINK_CHATML_TEMPLATE if takes_reasoning(tokenizer.chat_template) else CHATML_TEMPLATE
        lines.append(f'TEMPLATE """{template}"""')
        system = default_system_prompt(tokenizer)
        if system:
            lines.append(f'SYSTEM """{system}"""')
        lines.append('PARAMETER stop "<|im_end|>"')
    else:
        lines.append("# Not a ChatML template: Ollama uses the chat template stored in the GGUF metadata.")
    write_text(path, "\n".join(lines) + "\n")  # temporary name, then renamed: never half a Modelfile
