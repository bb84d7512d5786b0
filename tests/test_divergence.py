"""A run that makes its model worse says so: the rule (fasttune/evaluate.py's `divergence`) on figures,
and one real run whose loss runs away while staying finite."""

from __future__ import annotations

import json

import pytest

from fasttune.config import Train
from fasttune.evaluate import divergence, divergence_warning
from helpers import first_rows, invoke


def test_a_held_out_loss_clearly_above_its_start_is_divergence():
    assert divergence(3.31, 10.80, []) == {"eval_loss": {"before": 3.31, "after": 10.80}}
    assert divergence(0.20, 0.75, []) is not None  # +0.55 nats: each held-out token 1.7x less likely
    assert divergence(3.31, 3.70, []) is None  # +0.39 nats: a small data set overfit, not a broken run
    assert divergence(3.31, 0.26, []) is None and divergence(None, 10.8, []) is None  # no held-out loss (GRPO)


def test_a_training_loss_that_runs_away_from_its_start_is_divergence():
    # the figures of the review's run: train.lr=1e6 for 3 steps on the chat recipe
    assert divergence(None, None, [2.06, 2.70, 10.80]) == {
        "train_loss": {"first": 2.06, "last": 10.8, "averaged_over": 1}}
    assert divergence(None, None, [2.1, 1.6, 1.2, 0.9, 0.6, 0.5, 0.4]) is None  # it learns
    # one hard batch at the end is not a run away: the first and last three logs are averaged
    assert divergence(None, None, [2.0, 2.1, 1.9, 1.2, 1.0, 0.8, 0.9, 0.7, 4.3]) is None
    assert divergence(None, None, [2.0]) is None  # one log: nothing to compare


def test_the_warning_names_the_figures_and_the_usual_causes():
    found = divergence(3.31, 10.80, [2.06, 2.70, 10.80])
    text = divergence_warning(found, Train(lr=1e6))
    assert "held-out eval loss 3.31 before training, 10.8 after (+7.49 nats)" in text
    assert "training loss 2.06 at the start, 10.8 at the end (5.2x)" in text
    for cause in ("train.lr=1e+06; try 100000", "fasttune check", "fp16", "diverged: true"):
        assert cause in text


@pytest.mark.e2e
def test_a_run_whose_loss_runs_away_finishes_with_a_warning_and_diverged_recorded(tmp_path):
    """Its own run: divergence needs a learning rate no shared run has. The hf backend trains in this
    process; 3 steps of one row of at most 64 tokens and 2 held-out rows keep it short."""
    held_out = first_rows("recipes/data/chat_eval.jsonl", 2, tmp_path / "eval.jsonl")
    result = invoke("run", "recipes/chat_sft.py", "model.backend=hf", "train.lr=1e6", "train.max_steps=3",
                    "train.batch_size=1", "data.max_seq_length=64", "eval.samples=0", "eval.drift=false", "log.report_to=[]",
                    f"data.eval={held_out}", f"log.runs_dir={tmp_path / 'runs'}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run] = list((tmp_path / "runs").iterdir())
    summary, status = (json.loads((run / name).read_text()) for name in ("eval.json", "status.json"))
    assert status["status"] == "finished" and status["diverged"] is True and summary["diverged"] is True
    held = summary["divergence"]["eval_loss"]
    assert held == {"before": summary["before"]["eval_loss"], "after": summary["after"]["eval_loss"]}
    assert held["after"] - held["before"] > 0.5 and status["divergence"] == summary["divergence"]
    assert summary["divergence"]["train_loss"]["last"] > 2 * summary["divergence"]["train_loss"]["first"]
    assert "Warning: training made the model worse: held-out eval loss" in result.stdout
