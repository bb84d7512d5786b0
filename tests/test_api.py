"""The Python API (fasttune/api.py) that notebooks use: it returns what the run folder holds and
answers as the CLI does. Training runs in a fresh process, as in a notebook kernel (Unsloth must be
imported before transformers, which this pytest process has usually imported already)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import fasttune
from fasttune.errors import ConfigError
from helpers import ROOT, run_cli

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


def test_chat_can_be_called_twice_in_one_session(tmp_path):
    """The first call imports fasttune/chat.py; it must not replace the function `fasttune.chat`
    with that module (a notebook asking twice, thinking on then off, met 'module is not callable')."""
    script = textwrap.dedent(f"""
        import fasttune
        for _ in range(2):
            try:
                fasttune.chat({str(tmp_path / "nothing.txt")!r}, "Hi?")
            except fasttune.errors.ConfigError as error:
                print("refused:", error)
        """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("refused:") == 2 and "not a run folder" in result.stdout


@pytest.mark.e2e
def test_train_returns_the_run_folder_contents_and_chat_answers_as_the_cli(tmp_path):
    script = textwrap.dedent(f"""
        import json, fasttune
        recipe = fasttune.load("recipes/chat_sft.py", "train.max_steps=2", "eval.samples=2",
                               "log.report_to=[]", "log.runs_dir={tmp_path / 'runs'}")
        report = fasttune.check(recipe, show=False)
        run = fasttune.train(recipe)
        print("RESULT " + json.dumps({{"task": report["task"], "path": str(run.path), "status": run.status,
            "compare": run.compare(), "samples": run.samples, "metrics": run.metrics,
            "figures": [f.name for f in run.figures], "wandb": run.wandb,
            "answer": run.chat({QUESTION!r}, max_new_tokens=16)}}))
        """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "imported before unsloth" not in done.stderr  # check() imported Unsloth first
    got = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])

    run_dir = ROOT / got["path"]
    summary = json.loads((run_dir / "eval.json").read_text())
    assert got["task"] == "chat_sft" and got["status"]["status"] == "finished"
    loss = next(row for row in got["compare"] if row["metric"] == "eval_loss")
    assert (loss["before"], loss["after"]) == (summary["before"]["eval_loss"], summary["after"]["eval_loss"])
    assert [m["step"] for m in got["metrics"] if "loss" in m] == [1, 2]
    samples_md = (run_dir / "samples.md").read_text()
    assert len(got["samples"]) == 2 and all(s["after"] in samples_md and s["reference"] for s in got["samples"])
    assert "loss.png" in got["figures"] and got["wandb"].startswith("not logged")

    cli = run_cli("chat", str(run_dir), "--prompt", QUESTION, "--max-new-tokens", "16")
    assert cli.returncode == 0, cli.stderr
    assert got["answer"] and got["answer"] == cli.stdout.strip()
