"""An Ollama Modelfile beside each GGUF, with the template the model was trained with.

A template mismatch after export (garbled or endless output in Ollama) is one of the most reported
fine-tuning problems: Ollama does not run the Jinja chat template, it needs its own Go template.
fasttune writes the Go twin of the turns it knows — ChatML (SmolLM2, Qwen, many fine-tunes; with
reasoning, fasttune's thinking ChatML) and Gemma's — with the stop on the template's end of turn and
the default system prompt when the Jinja template inserts one (the model was trained seeing it).
For other templates it says so in the file and leaves Ollama to the chat template stored in the GGUF
metadata. Every export renders the twin against training's render (fasttune/export/conformance.py),
so a twin that drifts from its Jinja template fails the export instead of shipping.

How Ollama fills a template (its template.Execute): system messages stay in `.Messages`, in their
place, and are also joined into `.System`. So the twins below render each message where it stands
and never `.System` on its own: a template that wrote `.System` before ranging over `.Messages`
would show the system prompt twice.

The thinking twin writes an assistant message's `.Thinking` in a "<think>\n…\n</think>\n\n" block
before its answer, as training wrote it, and with thinking switched off (`ollama run --think=false`,
`"think": false`) the empty think block prefilled after the generation prompt.
"""

from __future__ import annotations

from pathlib import Path

from fasttune.run_folder import write_text
from fasttune.thinking import takes_reasoning

CHATML_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)

THINK_CHATML_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    '{{ if and (eq .Role "assistant") .Thinking }}<think>\n{{ .Thinking }}\n</think>\n\n{{ end }}'
    "{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
    "{{ if and $.IsThinkSet (not $.Think) }}<think>\n\n</think>\n\n{{ end }}"
)

GEMMA_TEMPLATE = (  # chat_template.GEMMA: a leading system message opens the first turn; no BOS (Ollama adds it)
    '{{- $system := "" }}{{- $first := true }}'
    '{{- range $i, $m := .Messages }}'
    '{{- if and (eq $i 0) (eq .Role "system") }}{{ $system = .Content }}'
    '{{- else }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}{{ .Role }}{{ end }}\n'
    "{{ if and $first $system }}{{ $system }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n{{ $first = false }}"
    "{{- end }}{{- end }}<start_of_turn>model\n"
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


def go_template(chat_template: str) -> str | None:
    """The Go twin of a Jinja chat template's turns, or None when fasttune has none."""
    if "<|im_start|>" in chat_template:
        return THINK_CHATML_TEMPLATE if takes_reasoning(chat_template) else CHATML_TEMPLATE
    if "<start_of_turn>" in chat_template:
        return GEMMA_TEMPLATE
    return None


def write_modelfile(path: Path, gguf_name: str, tokenizer) -> None:
    from fasttune.chat_template import end_of_turn_ids

    lines = [f"# Ollama: ollama create my-model -f {path.name}", f"FROM ./{gguf_name}", ""]
    template = go_template(tokenizer.chat_template or "")
    if template:
        lines.append(f'TEMPLATE """{template}"""')
        system = default_system_prompt(tokenizer)
        if system:
            lines.append(f'SYSTEM """{system}"""')
        lines.append(f'PARAMETER stop "{tokenizer.convert_ids_to_tokens(end_of_turn_ids(tokenizer)[0])}"')
    else:
        lines.append("# Not a ChatML or Gemma template: Ollama uses the chat template stored in the GGUF metadata.")
    write_text(path, "\n".join(lines) + "\n")  # temporary name, then renamed: never half a Modelfile
