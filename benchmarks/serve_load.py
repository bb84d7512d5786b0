"""Load on `fasttune serve`: 32 short chats sent at once, on the embedded model as a transformers folder
and as its shipped GGUF. Requests per second, latency p50/p95 (from send to full answer: a request
queued behind others waits for them, since the server generates one answer at a time), and generated
tokens per second.

Each target is served by a fresh `python -m fasttune.cli serve` process on a free port; one request
warms it up first. The prompts are the chat recipe's held-out questions, answered greedily (max_tokens
32), so both targets do the same work.

    python benchmarks/serve_load.py                  # writes benchmarks/results/serve-load-*.json
    python benchmarks/serve_load.py --requests 8     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from provenance import ROOT, record, versions, write_result

PROMPTS = [json.loads(line)["messages"][0]["content"]
           for line in (ROOT / "recipes" / "data" / "chat_eval.jsonl").read_text().splitlines()]


def targets() -> dict[str, Path]:
    from fasttune import models

    return {"transformers": Path(models.resolve(models.EMBEDDED)), "gguf": models.shipped_gguf()}


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def chat(url: str, prompt: str, max_tokens: int) -> tuple[float, int]:
    """(seconds from send to answer, tokens generated)."""
    started = time.perf_counter()
    reply = post(url + "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}],
                                                "temperature": 0, "max_tokens": max_tokens})
    return time.perf_counter() - started, reply["usage"]["completion_tokens"]


def measure(target: Path, requests: int, max_tokens: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "fasttune.cli", "serve", str(target), "--port", str(port)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"fasttune serve {target} exited: {server.stderr.read()[-2000:]}")
            try:
                urllib.request.urlopen(url + "/health", timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        ready = time.perf_counter() - started
        chat(url, PROMPTS[0], max_tokens)  # warm-up
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(requests)]
        began = time.perf_counter()
        with ThreadPoolExecutor(requests) as pool:
            results = list(pool.map(lambda p: chat(url, p, max_tokens), prompts))
        wall = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = sorted(r[0] for r in results)
    tokens = sum(r[1] for r in results)
    return {"target": str(target), "startup_s": round(ready, 2), "requests": requests, "wall_s": round(wall, 2),
            "requests_per_s": round(requests / wall, 2),
            "latency_p50_s": round(statistics.median(latencies), 2),
            "latency_p95_s": round(latencies[min(len(latencies) - 1, round(0.95 * len(latencies)) - 1)], 2),
            "completion_tokens": tokens, "tokens_per_s": round(tokens / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    results, load = {}, os.getloadavg()  # other work on the machine slows every figure: recorded
    for name, target in targets().items():
        results[name] = measure(target, args.requests, args.max_tokens)
        print(name, json.dumps(results[name]), flush=True)
    write_result("serve-load", {"benchmark": "serve_load", "settings": vars(args), "results": results,
                                "load_average_1_5_15_min_at_start": load,
                                "provenance": {**record(), "serve_versions": versions(("fastapi", "uvicorn"))}})


if __name__ == "__main__":
    main()
