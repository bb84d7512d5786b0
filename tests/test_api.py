"""The Python API (fasttune/api.py) that notebooks use: it returns what the run folder holds and
answers as the CLI does. Training through it happens in the notebooks' kernels (tests/test_notebooks.py),
fresh processes where Unsloth is imported first; this pytest process has imported transformers already."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import fasttune
from fasttune.errors import ConfigError
from helpers import ROOT, invoke

QUESTION = "What is the capital of Italy?"


def test_load_applies_overrides_to_a_copy_and_reports_bad_ones():
    recipe = fasttune.load("recipes/chat_sft.py")
    changed = fasttune.load(recipe, "train.max_steps=3", "model.lora.r=8")
    assert (changed.train.max_steps, changed.model.lora.r) == (3, 8)
    assert (recipe.train.max_steps, recipe.model.lora.r) == (60, 16)  # the original is untouched
    with pytest.raises(ConfigError, match="train.lr"):
        fasttune.load(recipe, "train.lr=fast")
    with pytest.raises(ConfigError, match="not a run folder"):
        fasttune.Run(ROOT / "recipes")


def test_check_and_chat_can_be_called_twice_in_one_session(tmp_path):
    """The first calls import fasttune/check.py and fasttune/chat.py; they must not replace the
    functions `fasttune.check` and `fasttune.chat` with those modules (a notebook asking twice met
    'module is not callable')."""
    script = textwrap.dedent(f"""
        import fasttune
        recipe = fasttune.load("recipes/chat_sft.py", "model.backend=hf")
        print("rows:", [fasttune.check(recipe, show=False)["splits"]["train"]["rows"] for _ in range(2)])
        for _ in range(2):
            try:
                fasttune.chat({str(tmp_path / "nothing.txt")!r}, "Hi?")
            except fasttune.errors.ConfigError as error:
                print("refused:", error)
        """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rows: [320, 320]" in result.stdout
    assert result.stdout.count("refused:") == 2 and "not a run folder" in result.stdout


@pytest.mark.e2e
def test_a_run_holds_what_the_run_folder_holds_and_chats_as_the_cli(notebook_run, tmp_path):
    """The chat_sft notebook trained its run through this API (fasttune.train, in a kernel where Unsloth
    came first); read back here through fasttune.Run, it gives the run folder's figures and answers as
    `fasttune chat` does."""
    import shutil

    run = fasttune.Run(notebook_run("chat_sft").path)
    # model.backend=hf: check() imports the backend first, and this process must not import Unsloth late
    report = fasttune.check(fasttune.load("recipes/chat_sft.py", "model.backend=hf"), show=False)
    summary = json.loads((run.path / "eval.json").read_text())
    assert report["task"] == "chat_sft" and run.status["status"] == "finished"
    loss = next(row for row in run.compare() if row["metric"] == "eval_loss")
    assert (loss["before"], loss["after"]) == (summary["before"]["eval_loss"], summary["after"]["eval_loss"])
    assert [m["step"] for m in run.metrics if "loss" in m] == [1, 2]
    samples_md = (run.path / "samples.md").read_text()
    assert len(run.samples) == 2 and all(s["after"] in samples_md and s["reference"] for s in run.samples)
    assert "loss.png" in [f.name for f in run.figures] and run.wandb.startswith("offline:")
    unlogged = tmp_path / "unlogged"
    shutil.copytree(run.path, unlogged, ignore=shutil.ignore_patterns("wandb", "export", "checkpoints"))
    assert fasttune.Run(unlogged).wandb.startswith("not logged")

    answer = run.chat(QUESTION, max_new_tokens=16)
    cli = invoke("chat", str(run.path), "--prompt", QUESTION, "--max-new-tokens", "16")
    assert cli.returncode == 0, cli.stderr
    assert answer and answer == cli.stdout.strip()
