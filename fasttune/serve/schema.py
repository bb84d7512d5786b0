"""The request bodies `fasttune serve` accepts (OpenAI's shapes, checked by pydantic) and its error shape.

Fields OpenAI defines that change nothing here (user, metadata, penalties) are accepted and ignored, so
that stock clients work; fields that would change the answer in a way this server cannot honour (n > 1,
logprobs, echo) are refused with a 400 that names them, rather than silently dropped.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fasttune.errors import RequestError

DEFAULT_MAX_TOKENS = 256
"""max_tokens when a request gives none (`fasttune chat`'s --max-new-tokens default)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(Strict):
    type: Literal["text"]
    text: str


class CalledFunction(Lenient):
    name: str
    arguments: str | dict = "{}"


class ToolCall(Lenient):
    id: str | None = None
    type: Literal["function"] = "function"
    function: CalledFunction


class Message(Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def as_template_message(self) -> dict:
        """The message as the chat template reads it: text parts joined, `developer` as `system`,
        tool-call arguments as JSON objects (fasttune's tool template writes them with tojson, as in training)."""
        text = self.content if isinstance(self.content, str | None) else "".join(p.text for p in self.content)
        out = {"role": "system" if self.role == "developer" else self.role, "content": text or ""}
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            out["tool_calls"] = [{"type": "function", "function": {"name": c.function.name,
                                                                   "arguments": _arguments(c.function.arguments)}}
                                 for c in self.tool_calls]
        if self.name is not None:
            out["name"] = self.name
        return out


class FunctionDef(Lenient):
    name: str
    description: str | None = None
    parameters: dict | None = None


class Tool(Lenient):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(Lenient):
    name: str


class NamedToolChoice(Lenient):
    type: Literal["function"]
    function: NamedFunction


class TemplateSwitches(Strict):
    """`chat_template_kwargs` (vLLM's and SGLang's name for it): only the thinking switch."""

    enable_thinking: bool | None = None


class StreamOptions(Lenient):
    include_usage: bool = False


class Sampling(Lenient):
    """What both endpoints share. temperature 0 is greedy decoding, the same as `fasttune chat`."""

    model: str | None = None
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = 1
    logprobs: Literal[False, None] = None

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise RequestError("stop: at most 4 strings, none empty")
        return stops


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    chat_template_kwargs: TemplateSwitches | None = None

    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(Sampling):
    prompt: str | list[str]
    echo: Literal[False] = False

    def text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise RequestError(f"prompt: one prompt per request, got {len(self.prompt)}")
        return self.prompt[0]

    def limit(self) -> int | None:
        return self.max_tokens


def error_body(message: str, status: int, param: str | None = None) -> dict:
    """OpenAI's error shape, which its clients turn into their exceptions (BadRequestError...)."""
    kind = {401: "authentication_error", 404: "not_found_error"}.get(status, "invalid_request_error")
    code = {401: "invalid_api_key", 413: "request_too_large"}.get(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def validation_message(errors: list[dict]) -> str:
    """pydantic's errors as one line: `messages.0.role: Input should be 'system', ...`."""
    parts = []
    for e in errors:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        if e.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'invalid')} at character "
                         f"{where})")
        else:
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", "invalid"))
    return "; ".join(parts)


def _arguments(value: str | dict) -> dict:
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value or "{}")
    except json.JSONDecodeError:
        raise RequestError(f"tool_calls: arguments {value!r} are not a JSON object") from None
    if not isinstance(parsed, dict):
        raise RequestError(f"tool_calls: arguments {value!r} are not a JSON object")
    return parsed
