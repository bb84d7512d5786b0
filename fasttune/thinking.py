"""Reasoning ("thinking") in data and at inference: one place for the field names, the checks, the
thinking switch, and how a generated answer splits into its thinking and its final answer.

Reasoning models answer in two parts, a thinking block and then the answer. Data carries the
reasoning beside the answer in `reasoning_content` (the field Qwen3's template and OpenAI-style
reasoning data use); `thinking` is accepted as an alias and renamed before rendering, so the chat
template only ever sees `reasoning_content`. The switch is Qwen3's `enable_thinking` template
variable: templates that do not mention it ignore it, which is why `takes_switch` exists — asking
for a switch a template does not have is an error, not a silent no-op.
"""

from __future__ import annotations

from fasttune.errors import ConfigError

REASONING = "reasoning_content"
ALIAS = "thinking"
OPEN, CLOSE = "<think>", "</think>"

SWITCH_VALUES = ("on", "off")
"""What `--thinking` and `fasttune.chat(thinking=...)` take (eval.thinking adds 'default' and 'both');
unset (None) leaves the template's own default."""


def reasoning_key(item: dict) -> str | None:
    """Which of the two field names `item` (a message or a row) carries its reasoning in, if any
    (null counts as none: OpenAI-style data writes it on turns without reasoning)."""
    return next((key for key in (REASONING, ALIAS) if item.get(key) is not None), None)


def check_reasoning(item: dict, where: str) -> list[tuple[str, str]]:
    """Problems with the reasoning of one assistant message or completion row: a string, one field."""
    key = reasoning_key(item)
    if key is None:
        return []
    if item.get(REASONING) is not None and item.get(ALIAS) is not None:
        return [(f"{where}{ALIAS}", f"give the reasoning in {REASONING} or in {ALIAS}, not both")]
    if not isinstance(item[key], str):
        return [(f"{where}{key}", f"must be a string, got {type(item[key]).__name__}")]
    return []


def misplaced(message: dict, where: str) -> list[tuple[str, str]]:
    """Reasoning on a turn other than the assistant's: only the model's own turns think."""
    key = reasoning_key(message)
    if key is None or message.get("role") == "assistant":
        return []
    return [(f"{where}{key}", f"reasoning belongs on assistant messages only, not on a {message.get('role')!r} one")]


def normalized(message: dict) -> dict:
    """The message with its reasoning under `reasoning_content` (the alias renamed, nulls dropped)."""
    key = reasoning_key(message)
    out = {k: v for k, v in message.items() if k not in (REASONING, ALIAS)}
    return out if key is None else {**out, REASONING: message[key]}


def has_reasoning(messages: list[dict]) -> bool:
    return any(reasoning_key(m) is not None for m in messages if isinstance(m, dict))


def takes_reasoning(template: str | None) -> bool:
    """Whether a chat template renders `reasoning_content` itself (Qwen3's, DeepSeek-R1-style ones)."""
    return REASONING in (template or "")


def takes_switch(template: str | None) -> bool:
    """Whether a chat template reads the `enable_thinking` switch."""
    return "enable_thinking" in (template or "")


def switch(mode: str | bool | None) -> bool | None:
    """'on' / 'off' (or a bool) as the value of `enable_thinking`; None leaves it unset."""
    if mode is None or isinstance(mode, bool):
        return mode
    if mode not in SWITCH_VALUES:
        raise ConfigError(f"thinking must be 'on' or 'off', got {mode!r}")
    return mode == "on"


def template_kwargs(enabled: bool | None) -> dict:
    """What apply_chat_template gets for a switch value: nothing when it is unset."""
    return {} if enabled is None else {"enable_thinking": enabled}


def require_switch(template: str | None, enabled: bool | None, what: str) -> None:
    if enabled is not None and not takes_switch(template):
        raise ConfigError(f"{what}: its chat template has no thinking switch (enable_thinking), so thinking "
                          "cannot be turned on or off; train with reasoning data to get fasttune's thinking template")


def split_answer(text: str) -> tuple[str | None, str]:
    """(the thinking, the final answer) of a generated text: the answer is what follows the think
    block's end. The opening tag may be missing — templates that open the block in the generation
    prompt (DeepSeek-R1's, Qwen3's thinking-only ones) leave only `</think>` in the output. No block:
    no thinking, all answer. A block that never closes: all thinking, no answer."""
    head, closed, tail = text.partition(CLOSE)
    head = head.strip()
    if closed:
        return head.removeprefix(OPEN).strip(), tail.strip()
    if head.startswith(OPEN):
        return head[len(OPEN):].strip(), ""
    return None, head
