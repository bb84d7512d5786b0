"""Built-in reward functions for GRPO, in TRL's convention:

    def reward(prompts, completions, **columns) -> list[float]

`completions` are strings, or (for chat prompts) lists holding one assistant message; `columns`
carries every other dataset column, one value per completion. Each factory below returns such a
function, named for the metrics (`rewards/<name>` in metrics.jsonl and W&B). Your own functions in a
recipe follow the same convention and can be mixed with these.

Each built-in reward also remembers the call that made it (`answer_match(column='answer', ...)`):
config.json records that, so a run's recipe can be rebuilt from its config (`rebuild`). A function
of your own is recorded by its name only.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import re

from fasttune.errors import ConfigError
from fasttune.thinking import OPEN, split_answer

NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
FACTORIES: dict = {}


def factory(make):
    """Register a reward factory; the function it returns carries `spec`, the call that made it."""

    @functools.wraps(make)
    def wrapper(*args, **kwargs):
        bound = inspect.signature(make).bind(*args, **kwargs)
        bound.apply_defaults()
        fn = make(*args, **kwargs)
        fn.spec = f"{make.__name__}({', '.join(f'{k}={v!r}' for k, v in bound.arguments.items())})"
        return fn

    FACTORIES[make.__name__] = wrapper
    return wrapper


def rebuild(spec: str):
    """The reward function a recorded `spec` describes, e.g. "length_penalty(max_chars=200)"."""
    try:
        call = ast.parse(spec, mode="eval").body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in FACTORIES):
            raise ValueError
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        return FACTORIES[call.func.id](*[ast.literal_eval(a) for a in call.args], **kwargs)
    except (SyntaxError, ValueError):
        raise ConfigError(f"reward {spec!r} is not a built-in reward call ({', '.join(FACTORIES)}): a reward "
                          "function defined in a recipe file is recorded by name only; rebuild from the recipe file"
                          ) from None


def text_of(completion) -> str:
    """The completion's text, whether TRL passed a string or a list of messages."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"] if completion else ""


def _number(text: str) -> float | None:
    found = NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


@factory
def answer_match(column: str = "answer", name: str = "answer_match"):
    """1.0 when the final answer equals the `column` value: numerically when the reference is a
    number (the last number in the answer counts), otherwise as text (case and spaces ignored)."""

    def reward(prompts, completions, **columns) -> list[float]:
        out = []
        for completion, reference in zip(completions, columns[column]):
            answer, ref = split_answer(text_of(completion))[1], str(reference).strip()
            expected = _number(ref) if NUMBER.fullmatch(ref) else None
            if expected is not None:
                got = _number(answer)
                out.append(1.0 if got is not None and abs(got - expected) < 1e-9 else 0.0)
            else:
                out.append(1.0 if " ".join(answer.lower().split()) == " ".join(ref.lower().split()) else 0.0)
        return out

    reward.__name__ = name
    return reward


@factory
def think_format():
    """1.0 for the thinking layout: the completion opens with `<think>`, thinks, closes the block and
    then answers (thinking.split_answer reads both parts)."""

    def think_format(prompts, completions, **columns) -> list[float]:
        out = []
        for c in completions:
            text = text_of(c)
            thought, answer = split_answer(text)
            out.append(1.0 if text.lstrip().startswith(OPEN) and thought and answer else 0.0)
        return out

    return think_format


@factory
def json_valid():
    """1.0 when the final answer parses as JSON."""

    def json_valid(prompts, completions, **columns) -> list[float]:
        out = []
        for c in completions:
            try:
                json.loads(split_answer(text_of(c))[1])
                out.append(1.0)
            except json.JSONDecodeError:
                out.append(0.0)
        return out

    return json_valid


@factory
def length_penalty(max_chars: int = 300):
    """0 up to `max_chars` characters, then down linearly to -1 at twice that length (and below)."""

    def length_penalty(prompts, completions, **columns) -> list[float]:
        return [-min(max(len(text_of(c)) - max_chars, 0) / max_chars, 1.0) for c in completions]

    return length_penalty
