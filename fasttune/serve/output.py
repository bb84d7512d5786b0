"""Generated text on its way to the client, piece by piece: stop strings cut it, a reasoning model's
think block goes to `reasoning_content`, and function-calling answers become OpenAI `tool_calls`.

A non-streamed answer is the streamed one joined: both pass through these same classes, so the two
cannot differ. The thinking split follows `fasttune.thinking.split_answer` (each part stripped, the
answer being what follows `</think>`), worked out as the text arrives; tool calls are read with the
function-calling task's own parser of its `<tool_call>` convention.
"""

from __future__ import annotations

import json
import uuid

from fasttune import thinking
from fasttune.tasks.function_calling import CALL, parse_calls


def _held(text: str, marks: list[str]) -> int:
    """How many characters at the end of `text` could be the start of one of `marks`."""
    return max((n for m in marks for n in range(min(len(m) - 1, len(text)), 0, -1) if text.endswith(m[:n])),
               default=0)


class Stops:
    """OpenAI's `stop`: the text up to the first stop string, which is not returned. Text that may be
    the start of a stop string is held back until the next piece says whether it is."""

    def __init__(self, stops: list[str]):
        self.stops, self.buffer, self.hit = stops, "", False

    def feed(self, piece: str) -> str:
        if self.hit or not self.stops:
            return "" if self.hit else piece
        self.buffer += piece
        cuts = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        if cuts:
            out, self.buffer, self.hit = self.buffer[:min(cuts)], "", True
            return out
        keep = _held(self.buffer, self.stops)
        out, self.buffer = self.buffer[:len(self.buffer) - keep], self.buffer[len(self.buffer) - keep:]
        return out

    def finish(self) -> str:
        out, self.buffer = self.buffer, ""
        return out


class Stripped:
    """A text with its leading and trailing whitespace dropped, streamed: whitespace at the end is held
    until more text follows it. With `strip` False, the text as it comes."""

    def __init__(self, strip: bool = True):
        self.strip, self.started, self.spaces = strip, False, ""

    def feed(self, piece: str) -> str:
        if not self.strip:
            return piece
        if not self.started:
            piece = piece.lstrip()
            self.started = bool(piece)
        body = piece.rstrip()
        if not body:
            self.spaces += piece
            return ""
        out, self.spaces = self.spaces + body, piece[len(body):]
        return out


class Parts:
    """Pieces of an answer -> (field, text) deltas, field `content` or `reasoning_content`.

    With `reasoning` (a template that renders reasoning_content), an answer that starts with `<think>`,
    or whose prompt left a think block open (templates that open it in the generation prompt), is
    reasoning up to `</think>` and content after it; otherwise it is all content, as split_answer says.
    """

    def __init__(self, reasoning: bool, prompt: str = "", strip: bool = True):
        opened = prompt.rfind(thinking.OPEN) > prompt.rfind(thinking.CLOSE)
        self.mode = ("think" if opened else "start") if reasoning else "answer"
        self.buffer = ""
        self.thought = self.mode == "think"
        """thought: whether the answer had a think block (reasoning_content is then a string, maybe empty)"""
        self.strip = {"content": Stripped(strip), thinking.REASONING: Stripped(strip)}

    def _out(self, field: str, text: str) -> list[tuple[str, str]]:
        text = self.strip[field].feed(text)
        return [(field, text)] if text else []

    def feed(self, piece: str) -> list[tuple[str, str]]:
        self.buffer += piece
        out = []
        while True:
            if self.mode == "answer":
                text, self.buffer = self.buffer, ""
                return out + self._out("content", text)
            if self.mode == "start":
                head = self.buffer.lstrip()
                if thinking.OPEN.startswith(head):
                    return out  # nothing yet, or what may become <think>
                if head.startswith(thinking.OPEN):
                    self.buffer, self.mode, self.thought = head[len(thinking.OPEN):], "think", True
                else:
                    self.mode = "answer"
                continue
            at = self.buffer.find(thinking.CLOSE)
            if at >= 0:
                out += self._out(thinking.REASONING, self.buffer[:at])
                self.buffer, self.mode = self.buffer[at + len(thinking.CLOSE):], "answer"
                continue
            keep = _held(self.buffer, [thinking.CLOSE])
            text, self.buffer = self.buffer[:len(self.buffer) - keep], self.buffer[len(self.buffer) - keep:]
            return out + self._out(thinking.REASONING, text)

    def finish(self) -> list[tuple[str, str]]:
        field = thinking.REASONING if self.mode == "think" else "content"
        text, self.buffer = self.buffer, ""
        return self._out(field, text)


class Reply:
    """One answer, streamed or not: pieces in, deltas out ({"content": ...}, {"reasoning_content": ...},
    at the end {"tool_calls": [...]}), and the whole message. `prefix` is text the answer was made to
    start with (it counts as the answer's); with `tools`, content is held to the end and read for calls."""

    def __init__(self, stops: list[str], reasoning: bool = False, prompt: str = "", prefix: str | None = None,
                 tools: bool = False, strip: bool = True):
        self.stops, self.parts, self.tools = Stops(stops), Parts(reasoning, prompt, strip), tools
        self.text = {"content": "", thinking.REASONING: ""}
        self.calls: list[dict] = []
        self.held = self._deltas(self.parts.feed(prefix or ""))

    @property
    def stopped(self) -> bool:
        """A stop string was met: nothing more is wanted from the model."""
        return self.stops.hit

    def _deltas(self, parts: list[tuple[str, str]]) -> list[dict]:
        for field, text in parts:
            self.text[field] += text
        return [{field: text} for field, text in parts if not (self.tools and field == "content")]

    def feed(self, piece: str) -> list[dict]:
        held, self.held = self.held, []
        return held + self._deltas(self.parts.feed(self.stops.feed(piece)))

    def finish(self) -> list[dict]:
        out = self.held + self._deltas(self.parts.feed(self.stops.finish()) + self.parts.finish())
        if self.tools:
            self.text["content"], self.calls = tool_calls(self.text["content"])
            if self.text["content"]:
                out.append({"content": self.text["content"]})
            if self.calls:
                out.append({"tool_calls": [{"index": i, **c} for i, c in enumerate(self.calls)]})
        return out

    def finish_reason(self, engine_reason: str) -> str:
        return "tool_calls" if self.calls else "stop" if self.stopped else engine_reason

    def message(self) -> dict:
        """The assistant message of a non-streamed answer (after finish)."""
        out = {"role": "assistant", "content": self.text["content"] or (None if self.calls else "")}
        if self.parts.thought:
            out[thinking.REASONING] = self.text[thinking.REASONING]
        if self.calls:
            out["tool_calls"] = self.calls
        return out


def tool_calls(content: str) -> tuple[str | None, list[dict]]:
    """(the content outside the calls, or None; the calls in OpenAI's shape) of an answer that holds
    `<tool_call>` blocks; arguments are a JSON string, as OpenAI sends them."""
    calls = parse_calls(content)
    if not calls:
        return content, []
    rest = CALL.sub("", content).strip() or None
    return rest, [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                   "function": {"name": c["name"], "arguments": _json(c.get("arguments", {}))}} for c in calls]


def _json(arguments) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
