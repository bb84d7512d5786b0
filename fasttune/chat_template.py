"""Render conversations with the model's chat template and mark which tokens the loss sees.

Loss masks are built from the rendered text rather than from `{% generation %}` markers: most
chat templates (SmolLM2's included) have no such markers, so TRL's `assistant_only_loss` refuses
them. Instead each assistant turn's character span is found by rendering the conversation up to
that turn twice — once ending in the generation prompt, once including the turn — and tokens whose
characters start inside a span get labels. This works for any template that renders a prefix of
the conversation as a prefix of the text, and says so clearly when one does not.
"""

from __future__ import annotations

from dataclasses import dataclass

# Used when a model has no chat template of its own (base models).
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

IGNORE = -100  # label of tokens the loss skips (PyTorch's cross-entropy ignore_index)


class TemplateError(ValueError):
    """The chat template cannot be used to mask assistant turns."""


def ensure_chat_template(tokenizer) -> str:
    """Give a template-less tokenizer ChatML; return which template is in use."""
    if tokenizer.chat_template:
        return "model"
    tokenizer.chat_template = CHATML
    return "chatml"


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn (with its end token)."""
    text = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = render(tokenizer, messages[: i + 1])
        if not (upto.startswith(before) and text.startswith(upto)):
            raise TemplateError(
                "the chat template does not render a conversation's beginning as the beginning of its text, "
                "so assistant turns cannot be located; set a simpler template (e.g. ChatML)"
            )
        spans.append((len(before), len(upto)))
    return text, spans


@dataclass
class Tokenized:
    input_ids: list[int]
    labels: list[int]
    truncated: bool


def tokenize_conversation(tokenizer, messages: list[dict], max_length: int) -> Tokenized:
    """Token ids of the rendered conversation; labels are the ids on assistant turns, IGNORE elsewhere."""
    text, spans = assistant_spans(tokenizer, messages)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoding["input_ids"]
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE
        for token, (begin, _) in zip(ids, encoding["offset_mapping"])
    ]
    truncated = len(ids) > max_length
    return Tokenized(ids[:max_length], labels[:max_length], truncated)
