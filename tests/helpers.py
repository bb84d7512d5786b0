"""What several test modules share: the repository root and the CLI run in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """`fasttune ARGS` in a fresh process (Unsloth must be imported before transformers, and a
    pytest process has usually imported transformers already), from the repository root.
    `env` values of None unset that variable."""
    merged = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fasttune.cli", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={k: v for k, v in merged.items() if v is not None},
    )
