"""What every benchmark result file records about where its figures came from.

A figure is only worth quoting with its source: the fasttune commit that produced it (and whether the
working tree had uncommitted changes), the versions of every package that decides speed or memory, and
the machine: the CPU model and whether it has AVX512-BF16 (without it bf16 matmuls are emulated and
Unsloth's CPU path trains in fp32), the GPU, and whether that GPU's memory was capped to stand in for a
smaller card. Read without importing torch, so a parent process that only launches runs holds no GPU.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fasttune", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "unsloth", "unsloth_zoo",
            "bitsandbytes", "xformers", "triton", "cut_cross_entropy", "llama_cpp_python", "gguf")


def commit() -> dict:
    """{"sha": HEAD, "dirty": uncommitted changes in the tree}; sha None outside a git checkout."""
    def git(*args: str) -> str | None:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    return {"sha": sha, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if sha else None}


def versions(packages=PACKAGES) -> dict:
    """Installed versions (None when absent), from package metadata."""
    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def cpu() -> dict:
    """{"model", "avx512_bf16", "cores"} from /proc/cpuinfo (model: the platform's name elsewhere)."""
    import os

    from fasttune.precision import cpu_info

    info = cpu_info()
    return {"model": info["model"] or platform.processor() or platform.machine(),
            "avx512_bf16": "avx512_bf16" in info["flags"], "cores": os.cpu_count()}


def record(gpu: dict | None = None) -> dict:
    """The provenance block of a result file; `gpu` describes the card the runs used (name, memory,
    and `emulated_gib` when its memory was capped to stand in for a smaller one)."""
    return {"fasttune_commit": commit(), "versions": versions(), "python": platform.python_version(),
            "cpu": cpu(), "gpu": gpu}


def write_result(kind: str, body: dict) -> Path:
    """benchmarks/results/KIND-<date>-<time>.json holding `body`, said on the terminal; its path."""
    import json
    import time

    out = ROOT / "benchmarks" / "results" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=2) + "\n")
    print(f"Wrote {out.relative_to(ROOT)}")
    return out
