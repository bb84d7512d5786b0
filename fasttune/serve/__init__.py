"""`fasttune serve TARGET`: an OpenAI-compatible HTTP server for a run folder, a merged folder or a GGUF.

Why FastAPI + uvicorn: both are well kept and widely deployed; FastAPI validates request bodies with
pydantic, so a malformed request gets a 400 naming the field instead of a traceback; it streams
server-sent events from async generators, so a client that goes away is noticed and its generation
stopped; and one stack serves transformers and GGUF targets alike, both through `fasttune chat`'s
loading and rendering code (fasttune/chat.py), so there is one renderer, the training template.

app.py holds the routes and checks, engine.py loading and generation, output.py what is done to the
text (stop strings, thinking, tool calls), schema.py the request shapes. Nothing here is imported until
`fasttune serve` runs: the CLI stays fast to start.
"""

from __future__ import annotations

from pathlib import Path


def serve(target: Path, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          max_tokens: int = 2048, thinking_mode: str | None = None, say=print) -> None:
    """Load `target`, then answer HTTP requests until interrupted (Ctrl-C)."""
    import uvicorn

    from fasttune.serve.app import create_app
    from fasttune.serve.engine import Engine
    from fasttune.thinking import switch

    engine = Engine(target, switch(thinking_mode))
    app = create_app(engine, api_key=api_key, max_tokens=max_tokens)
    key = "; API key required" if api_key else ""
    say(f"Serving {target} as model {engine.name!r} at http://{host}:{port}/v1{key} (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
