"""Shared fixtures: the real SmolLM2 tokenizer and a recipe file writer. Helpers that tests import
live in tests/helpers.py (a conftest is for pytest to load, not for tests to import)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


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
