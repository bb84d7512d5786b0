"""Built-in reward functions for GRPO, in TRL's convention:

    def reward(prompts, completions, **columns) -> list[float]

`completions` are strings, or (for chat prompts) lists holding one assistant message; `columns`
carries every other dataset column, one value per completion. Each factory below returns such a
function, named for the metrics (`rewards/<name>` in metrics.jsonl and W&B). Your own functions in a
recipe follow the same convention and can be mixed with these.
"""

from __future__ import annotations

import json
import re

NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
THINK = re.compile(r"\s*<think>(.+?)</think>\s*(\S.*)", re.DOTALL)


def text_of(completion) -> str:
    """The completion's text, whether TRL passed a string or a list of messages."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"] if completion else ""


def final_answer(text: str) -> str:
    """What comes after </think> if the completion thinks first, else the whole text."""
    match = THINK.match(text)
    return (match.group(2) if match else text).strip()


def _number(text: str) -> float | None:
    found = NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def answer_match(column: str = "answer", name: str = "answer_match"):
    """1.0 when the final answer equals the `column` value: numerically when the reference is a
    number (the last number in the answer counts), otherwise as text (case and spaces ignored)."""

    def reward(prompts, completions, **columns) -> list[float]:
        out = []
        for completion, reference in zip(completions, columns[column]):
            answer, ref = final_answer(text_of(completion)), str(reference).strip()
            expected = _number(ref) if NUMBER.fullmatch(ref) else None
            if expected is not None:
                got = _number(answer)
                out.append(1.0 if got is not None and abs(got - expected) < 1e-9 else 0.0)
            else:
                out.append(1.0 if " ".join(answer.lower().split()) == " ".join(ref.lower().split()) else 0.0)
        return out

    reward.__name__ = name
    return reward


def think_format():
    """1.0 for the thinking layout: `<think>…</think>` followed by a non-empty answer."""

    def think_format(prompts, completions, **columns) -> list[float]:
        return [1.0 if THINK.fullmatch(text_of(c)) else 0.0 for c in completions]

    return think_format


def json_valid():
    """1.0 when the final answer parses as JSON."""

    def json_valid(prompts, completions, **columns) -> list[float]:
        out = []
        for c in completions:
            try:
                json.loads(final_answer(text_of(c)))
                out.append(1.0)
            except json.JSONDecodeError:
                out.append(0.0)
        return out

    return json_valid


def length_penalty(max_chars: int = 300):
    """0 up to `max_chars` characters, then down linearly to -1 at twice that length (and below)."""

    def length_penalty(prompts, completions, **columns) -> list[float]:
        return [-min(max(len(text_of(c)) - max_chars, 0) / max_chars, 1.0) for c in completions]

    return length_penalty
