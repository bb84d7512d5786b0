"""Runs that stop early keep their work: Ctrl-C saves a checkpoint at the step reached and prints the
command that resumes it; a loss that stops being finite ends the run before that step is saved."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT, run_cli

pytestmark = pytest.mark.e2e  # trains the embedded model for a few steps

FAST = ["model.backend=hf", "model.dtype=float32", "eval.samples=0", "log.report_to=[]", "train.warmup_ratio=0"]


@pytest.mark.parametrize("signum, name", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_at_the_step_reached_and_resume_finishes(signum, name, tmp_path):
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "fasttune.cli", "run", "recipes/chat_sft.py", *FAST, "train.max_steps=200",
               f"log.runs_dir={runs}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline:  # wait until two optimizer steps are logged, then press Ctrl-C
        logged = list(runs.glob("*/metrics.jsonl"))
        if logged and sum('"loss"' in line for line in logged[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.5)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 130, stdout[-2000:] + stderr[-2000:]
    [run_dir] = list(runs.iterdir())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted"
    [checkpoint] = list((run_dir / "checkpoints").glob("checkpoint-*"))
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    assert 2 <= step < 200 and checkpoint.name == f"checkpoint-{step}"
    assert (checkpoint / "optimizer.pt").is_file() and (checkpoint / "adapter_model.safetensors").is_file()
    assert f"{name} during training: checkpoint saved at {checkpoint}" in stderr
    resume = shlex.join(["fasttune", "run", "recipes/chat_sft.py", *FAST, "train.max_steps=200", f"log.runs_dir={runs}",
                         f"train.resume={run_dir}"])
    assert f"Resume with: {resume}" in stderr

    # the printed command, with fewer steps so the test stays short, continues from that step
    result = run_cli(*shlex.split(resume)[1:-1], f"train.max_steps={step + 1}", f"train.resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    [resumed] = [p for p in runs.iterdir() if p != run_dir]
    summary = json.loads((resumed / "eval.json").read_text())
    assert summary["steps"] == step + 1 and summary["resumed_from"] == str(checkpoint)


def test_a_non_finite_loss_stops_the_run_and_names_the_last_good_checkpoint(tmp_path):
    runs = tmp_path / "runs"
    # lr 1e30: the first update is finite, the weights after it are not
    result = run_cli("run", "recipes/chat_sft.py", *FAST, "train.max_steps=6", "train.save_steps=1",
                     "train.lr=1e30", f"log.runs_dir={runs}")
    assert result.returncode == 2, result.stderr[-3000:]
    [run_dir] = list(runs.iterdir())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    bad = next(r for r in records if "loss" in r and not all(map(_finite, (r["loss"], r.get("grad_norm", 0)))))
    saved = sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    assert f"checkpoint-{bad['step']}" not in saved and saved  # the poisoned step was never saved
    last = run_dir / "checkpoints" / saved[-1]
    assert f"at step {bad['step']}" in result.stderr and "learning rate" in result.stderr
    assert f"The last good checkpoint is {last}" in result.stderr
    assert not (run_dir / "adapter").exists() and not (run_dir / "eval.json").exists()
    assert os.path.isfile(last / "trainer_state.json")


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


@pytest.mark.parametrize("backend", ["hf", "unsloth"])
def test_kill_9_then_resume_ends_where_an_uninterrupted_run_ends(backend, tmp_path):
    """SIGKILL from outside, after a checkpoint: the resumed run's later losses and final adapter are
    those of a run that was never stopped (data order, RNG, optimizer and scheduler restored)."""
    from safetensors.torch import load_file

    args = ["run", "recipes/chat_sft.py", *FAST, f"model.backend={backend}", "train.max_steps=8", "train.save_steps=2"]
    straight = run_cli(*args, f"log.runs_dir={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed_runs = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "fasttune.cli", *args, f"log.runs_dir={killed_runs}"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and not list(killed_runs.glob("*/checkpoints/checkpoint-4/trainer_state.json")):
        time.sleep(0.2)
    process.kill()  # SIGKILL: nothing in the process runs after this
    process.wait(timeout=60)
    [killed] = list(killed_runs.iterdir())
    assert not (killed / "adapter").exists()  # it really died before the end

    resumed = run_cli(*args, f"log.runs_dir={tmp_path / 'resumed'}", f"train.resume={killed}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    [straight_dir] = list((tmp_path / "straight").iterdir())
    [resumed_dir] = list((tmp_path / "resumed").iterdir())
    start = json.loads((resumed_dir / "eval.json").read_text())["resumed_from"]
    start_step = int(start.rsplit("-", 1)[1])
    assert 4 <= start_step < 8

    def losses(run_dir):
        return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
                if "loss" in r}

    after = {s: v for s, v in losses(straight_dir).items() if s > start_step}
    assert after and losses(resumed_dir) == pytest.approx(after, abs=1e-4)
    a = load_file(straight_dir / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed_dir / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-5, key
