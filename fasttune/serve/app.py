"""The HTTP routes of `fasttune serve`: OpenAI's /v1/chat/completions, /v1/completions and /v1/models,
and /health; the API key and body-size checks; every error in OpenAI's error shape.

A malformed body is a 400 whose message names the field (FastAPI's default is a 422 in its own shape,
which OpenAI clients do not read). Streams are server-sent events, `data: {chunk}` per piece of text and
`data: [DONE]` at the end, as OpenAI sends them.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from contextlib import aclosing

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse

from fasttune import thinking
from fasttune.errors import FasttuneError, RequestError
from fasttune.serve.engine import Engine
from fasttune.serve.output import Reply
from fasttune.serve.schema import (
    DEFAULT_MAX_TOKENS,
    ChatRequest,
    CompletionRequest,
    error_body,
    validation_message,
)

BODY_LIMIT = 1 << 20
"""The largest request body, in bytes (1 MiB holds a conversation many times the model's context)."""


def create_app(engine: Engine, api_key: str | None = None, max_tokens: int = 2048, body_limit: int = BODY_LIMIT):
    """The ASGI app serving `engine`; `max_tokens` caps what a request may ask for."""
    app = FastAPI(title="fasttune serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, api_key=api_key, body_limit=body_limit)
    started = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def invalid(request, error):
        return JSONResponse(error_body(validation_message(error.errors()), 400), status_code=400)

    @app.exception_handler(FasttuneError)  # RequestError, and any user error fasttune's own code raises
    async def refused(request, error):
        status = getattr(error, "status", 400)
        return JSONResponse(error_body(str(error), status, getattr(error, "param", None)), status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request, error):
        return JSONResponse(error_body(str(error.detail), error.status_code), status_code=error.status_code)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": engine.name, **engine.stats}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": engine.name, "object": "model", "created": started,
                                            "owned_by": "fasttune"}]}

    def limit(asked: int | None) -> int:
        if asked is not None and asked > max_tokens:
            raise RequestError(f"max_tokens {asked} is above this server's limit of {max_tokens} "
                               "(fasttune serve --max-tokens)", param="max_tokens")
        return asked or min(DEFAULT_MAX_TOKENS, max_tokens)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        messages = [m.as_template_message() for m in body.messages]
        tools = [t.model_dump(exclude_none=True) for t in body.tools] if body.tools else None
        switch = body.chat_template_kwargs.enable_thinking if body.chat_template_kwargs else None
        text, prefix = engine.chat_prompt(messages, tools, body.tool_choice, switch)
        job = engine.job(text, False, limit(body.limit()), body.temperature, body.top_p, body.seed)
        reply = Reply(body.stops(), thinking.takes_reasoning(engine.template), text, prefix,
                      tools=bool(tools) and body.tool_choice != "none")
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": engine.name}
        if body.stream:
            def chunk(delta, finish=None):
                return {**head, "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

            return events(engine, job, reply, chunk, {"role": "assistant", "content": ""}, body)
        if not await collect(engine, job, reply, request):
            return JSONResponse(error_body("the client went away", 499), status_code=499)
        return {**head, "object": "chat.completion", "usage": usage(job),
                "choices": [{"index": 0, "message": reply.message(), "logprobs": None,
                             "finish_reason": reply.finish_reason(job.finish_reason)}]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        job = engine.job(body.text(), True, limit(body.limit()), body.temperature, body.top_p, body.seed)
        reply = Reply(body.stops(), strip=False)
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": engine.name}
        if body.stream:
            def chunk(delta, finish=None):
                return {**head, "object": "text_completion",
                        "choices": [{"index": 0, "text": delta.get("content", ""), "finish_reason": finish,
                                     "logprobs": None}]}

            return events(engine, job, reply, chunk, None, body)
        if not await collect(engine, job, reply, request):
            return JSONResponse(error_body("the client went away", 499), status_code=499)
        return {**head, "object": "text_completion", "usage": usage(job),
                "choices": [{"index": 0, "text": reply.text["content"], "logprobs": None,
                             "finish_reason": reply.finish_reason(job.finish_reason)}]}

    return app


def usage(job) -> dict:
    return {"prompt_tokens": len(job.ids), "completion_tokens": job.completion_tokens,
            "total_tokens": len(job.ids) + job.completion_tokens}


async def collect(engine: Engine, job, reply: Reply, request) -> bool:
    """Run a non-streamed request to its end; False if its client went away first (checked every few
    pieces: a non-streamed request sends nothing until the end, so only asking tells)."""
    async with aclosing(engine.stream(job)) as pieces:
        count = 0
        async for piece in pieces:
            reply.feed(piece)
            if reply.stopped:
                break
            count += 1
            if count % 8 == 1 and await request.is_disconnected():
                return False
    reply.finish()
    return True


def events(engine: Engine, job, reply: Reply, chunk, first: dict | None, body):
    """The answer as server-sent events; the generation stops when the stream does (a client gone)."""
    def sse(data) -> str:
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    async def stream():
        if first is not None:
            yield sse(chunk(first))
        async with aclosing(engine.stream(job)) as pieces:
            async for piece in pieces:
                for delta in reply.feed(piece):
                    yield sse(chunk(delta))
                if reply.stopped:
                    break
        for delta in reply.finish():
            yield sse(chunk(delta))
        yield sse(chunk({}, reply.finish_reason(job.finish_reason)))
        if body.stream_options and body.stream_options.include_usage:
            yield sse({**chunk({}), "choices": [], "usage": usage(job)})
        yield "data: [DONE]\n\n"

    class EventStream(StreamingResponse):
        async def stream_response(self, send):
            try:
                await super().stream_response(send)
            finally:  # however the stream ends (a send to a closed socket included), stop the worker
                await self.body_iterator.aclose()

    return EventStream(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class Guard:
    """ASGI middleware: the API key on every request (401 otherwise), and request bodies of known size
    no larger than the limit (411 / 413), checked before a byte of the body is read."""

    def __init__(self, app, api_key: str | None, body_limit: int):
        self.app, self.body_limit = app, body_limit
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        problem = None
        if self.expected and not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
            problem = (401, "invalid or missing API key: send `Authorization: Bearer KEY`")
        elif scope["method"] == "POST":
            length = headers.get(b"content-length")
            if length is None or not length.isdigit():
                problem = (411, "a request body needs a Content-Length header")
            elif int(length) > self.body_limit:
                problem = (413, f"request body of {int(length)} bytes is over the limit of {self.body_limit}")
        if problem is None:
            return await self.app(scope, receive, send)
        await JSONResponse(error_body(problem[1], problem[0]), status_code=problem[0])(scope, receive, send)
