"""Shared fixtures: the real SmolLM2 tokenizer, a recipe file writer, and the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded model's own tokenizer (converted once into the user cache)."""
    from transformers import AutoTokenizer

    from fasttune import models

    return AutoTokenizer.from_pretrained(models.resolve(models.EMBEDDED))


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe for `task` over `data` (a path) into tmp_path and return its path."""

    def write(data: str, task: str = "tasks.ChatSFT()", name: str = "recipe.py") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(f"""\
            from fasttune import Data, Log, Recipe, Train, tasks

            recipe = Recipe(
                task={task},
                data=Data({data!r}, eval=0.25),
                train=Train(max_steps=2),
                log=Log(runs_dir={str(tmp_path / 'runs')!r}, report_to=[]),
            )
            """))
        return path

    return write


def run_cli(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """`fasttune ARGS` in a fresh process (Unsloth must be imported before transformers, and a
    pytest process has usually imported transformers already), from the repository root.
    `env` values of None unset that variable."""
    merged = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fasttune.cli", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={k: v for k, v in merged.items() if v is not None},
    )
