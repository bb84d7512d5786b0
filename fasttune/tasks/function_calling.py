"""Function calling: conversations in `messages` plus the `tools` they may call, loss on assistant
turns (tool calls and answers).

Rows follow the TRL / OpenAI format: `tools` holds JSON-schema function definitions
({"type": "function", "function": {"name", "description", "parameters"}}); an assistant turn may
carry `tool_calls` ([{"type": "function", "function": {"name", "arguments"}}]), followed by `tool`
messages with the results, then a final assistant answer.

Rendering: the model's own chat template when it knows tools; otherwise fasttune's tool-calling
template in the turns the chosen template writes (fasttune/chat_template.py, TOOLS: Gemma's turns for a
Gemma template, ChatML otherwise), saved with the tokenizer so training, evaluation, `fasttune chat`
and exports all use it.

Validation (before any model loads): every call names a tool the row defines, its arguments
validate against that tool's JSON schema (jsonschema), and tool results follow a call.

Metrics on held-out prompts (the conversation up to the first assistant turn): for rows that call
a tool, the share of answers holding a parseable call, the right tool name, and exactly the right
arguments; for rows that should not call one, the share that did not.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from fasttune.chat_template import MARKERS, TOOLS, TemplateChoice, tokenize_conversation
from fasttune.tasks.base import SFTTask, share

CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


@dataclass
class FunctionCalling(SFTTask):
    name: ClassVar[str] = "function_calling"
    scores_outputs: ClassVar[bool] = True

    def setup_tokenizer(self, tokenizer, setting: str = "auto"):
        """The template `setting` gives when it renders tools; else fasttune's tool-calling template in
        that template's turns (a Gemma model keeps <end_of_turn>, one token, as its stop), else ChatML's."""
        choice = super().setup_tokenizer(tokenizer, setting)
        template = tokenizer.chat_template or ""
        if "tools" in template:
            return TemplateChoice(choice.name, f"{choice.why}, with tools")
        family = next((name for name, (start, _) in MARKERS.items() if start in template), "chatml")
        tokenizer.chat_template = TOOLS[family]
        return TemplateChoice(family, f"fasttune's tool-calling {family} turns: the template had no tools")

    def check_row(self, row: dict) -> list[tuple[str, str]]:
        tools, problems = row.get("tools"), []
        schemas = {}
        if not isinstance(tools, list) or not tools:
            problems.append(("tools", "missing or not a non-empty list of function definitions"))
        else:
            for i, tool in enumerate(tools):
                name, problem = _tool_schema(tool)
                if problem:
                    problems.append((f"tools[{i}]", problem))
                else:
                    schemas[name] = tool["function"].get("parameters") or {"type": "object"}
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            return problems + [("messages", "missing or not a non-empty list of messages")]
        pending: list[str] = []  # names called and not yet answered by a tool message
        for i, m in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
                problems.append((f"{where}.role", f"unknown role {m.get('role') if isinstance(m, dict) else m!r}; "
                                 "expected system, user, assistant or tool"))
                continue
            calls = m.get("tool_calls") or []
            if not isinstance(m.get("content", ""), str):
                problems.append((f"{where}.content", f"must be a string, got {type(m['content']).__name__}"))
            if m["role"] == "assistant" and calls:
                pending = []
                for j, call in enumerate(calls):
                    problems += _check_call(call, schemas, f"{where}.tool_calls[{j}]")
                    pending.append(((call.get("function") or {}).get("name")) if isinstance(call, dict) else None)
            elif m["role"] == "tool":
                if not pending:
                    problems.append((where, "a tool message must follow an assistant message with tool_calls"))
                elif m.get("name") and m["name"] not in pending:
                    called = ", ".join(map(str, pending))
                    problems.append((f"{where}.name", f"answers {m['name']!r}, but the calls were to {called}"))
            else:
                pending = []
        if "assistant" not in {m.get("role") for m in messages if isinstance(m, dict)}:
            problems.append(("messages", "no assistant message: nothing to learn from this row"))
        return problems

    def data_figures(self, train_rows: list, eval_rows: list) -> dict:
        """Tools defined and called, per split: a tool the training rows never call cannot be learnt."""
        out = {}
        for split, rows in (("train", train_rows), ("eval", eval_rows)):
            defined, called, with_call = Counter(), Counter(), 0
            for r in rows:
                defined.update(t["function"]["name"] for t in r.data["tools"])
                calls = [c["function"]["name"] for m in r.data["messages"] for c in (m.get("tool_calls") or [])]
                called.update(calls)
                with_call += bool(calls)
            out[split] = {"rows_with_calls": with_call, "rows_without_calls": len(rows) - with_call,
                          "tools_defined": dict(sorted(defined.items())), "calls": dict(sorted(called.items()))}
        return out

    def tokenize(self, row: dict, tokenizer, max_length: int) -> dict:
        return tokenize_conversation(tokenizer, normalized(row["messages"]), max_length, tools=row["tools"]).example()

    def prompt(self, row: dict):
        messages = normalized(row["messages"])
        first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
        calls = messages[first].get("tool_calls")
        reference = json.dumps(calls[0]["function"], ensure_ascii=False) if calls else "(no tool call)"
        return {"messages": messages[:first], "tools": row["tools"]}, reference

    def metrics(self, predictions: list[str], references: list[str], eval_loss: float | None) -> dict:
        call_rows = [(p, json.loads(r)) for p, r in zip(predictions, references) if r != "(no tool call)"]
        plain_rows = [p for p, r in zip(predictions, references) if r == "(no tool call)"]
        parsed = [(parse_call(p), ref) for p, ref in call_rows]
        return {
            "valid_call": share([c is not None for c, _ in parsed]),
            "tool_name": share([c is not None and c.get("name") == ref["name"] for c, ref in parsed]),
            "arguments_exact": share([c is not None and c.get("name") == ref["name"]
                                      and c.get("arguments") == ref["arguments"]
                                      for c, ref in parsed]),
            "no_call_when_none_needed": share([parse_call(p) is None and "<tool_call>" not in p for p in plain_rows]),
            "rows": {"with_call": len(call_rows), "without_call": len(plain_rows)},
        }


def parse_call(text: str) -> dict | None:
    """The first <tool_call>{"name", "arguments"}</tool_call> in an answer, or None."""
    match = CALL.search(text)
    return _call(match.group(1)) if match else None


def parse_calls(text: str) -> list[dict]:
    """Every well-formed <tool_call> in an answer, in order (`fasttune serve` returns them as tool_calls)."""
    return [call for call in map(_call, CALL.findall(text)) if call is not None]


def _call(text: str) -> dict | None:
    try:
        call = json.loads(text)
    except json.JSONDecodeError:
        return None
    return call if isinstance(call, dict) and "name" in call else None


def normalized(messages: list[dict]) -> list[dict]:
    """Arguments as JSON objects (rows may give them as JSON strings, OpenAI style)."""
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = [{**c, "function": {**c["function"], "arguments": _arguments(c["function"].get("arguments"))}}
                     for c in m["tool_calls"]]
            m = {**m, "content": m.get("content") or "", "tool_calls": calls}
        out.append(m)
    return out


def _arguments(value):
    return json.loads(value) if isinstance(value, str) else (value or {})


def _tool_schema(tool) -> tuple[str | None, str | None]:
    from jsonschema import Draft202012Validator, SchemaError

    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return None, 'must be {"type": "function", "function": {"name": ..., "parameters": {...}}}'
    try:
        Draft202012Validator.check_schema(function.get("parameters") or {"type": "object"})
    except SchemaError as error:
        return None, f"parameters of {function['name']!r} is not a valid JSON schema: {error.message}"
    return function["name"], None


def _check_call(call, schemas: dict, where: str) -> list[tuple[str, str]]:
    from jsonschema import Draft202012Validator

    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return [(where, 'must be {"type": "function", "function": {"name": ..., "arguments": {...}}}')]
    name = function["name"]
    if name not in schemas:
        return [(f"{where}.function.name", f"calls {name!r}, which this row's tools do not define "
                 f"(defined: {', '.join(schemas) or 'none'})")]
    try:
        arguments = _arguments(function.get("arguments"))
    except json.JSONDecodeError:
        return [(f"{where}.function.arguments", "is a string that is not valid JSON")]
    errors = sorted(Draft202012Validator(schemas[name]).iter_errors(arguments), key=lambda e: list(e.path))
    return [(f"{where}.function.arguments" + "".join(f".{p}" for p in e.path), f"{e.message} (schema of {name!r})")
            for e in errors]

