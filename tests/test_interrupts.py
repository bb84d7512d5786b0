"""Runs that stop early keep their work: SIGTERM or Ctrl-C saves a checkpoint at the step reached and
prints the command that resumes it; kill -9 leaves the last checkpoint; a loss that stops being finite
ends the run before that step is saved.

Each backend's test is one story on the session's CHAT_RUN settings (tests/helpers.py): a run is
stopped by a signal, the printed command resumes it, and the last resume must end exactly where the
uninterrupted CHAT_RUN of the session ended (data order, RNG, optimizer and scheduler restored). On the
hf backend the resumed run is also killed with SIGKILL and resumed again, and that last run is
interrupted in its evaluation after training and then in its export: a finished training is never
lost, status.json says which step stopped, and the command the message prints completes it."""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from fasttune.tracking import read_metrics
from helpers import ROOT, invoke, run_cli

pytestmark = pytest.mark.e2e  # trains the embedded model for a few steps


def start(args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fasttune.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 600
    while not condition():
        assert process.poll() is None and time.time() < deadline, f"the run ended before {what}"
        time.sleep(0.05)


def logged_steps(run_dir) -> list[int]:
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    return [json.loads(line)["step"] for line in lines if '"loss"' in line]


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "loss" in r}


def only_new(runs, known=()):
    [path] = [p for p in runs.iterdir() if p not in known]
    return path


def stop_with_a_signal(args, runs, signum: int, name: str):
    """Start `fasttune ARGS`, send `signum` once two optimizer steps are logged, and check what an
    interruption during training leaves: exit 130, status 'interrupted', a complete checkpoint at the
    step reached, the message and the resume command. Returns (run folder, step, resume argv)."""
    process = start(args)
    wait_for(lambda: any(len(logged_steps(p)) >= 2 for p in runs.glob("*")), process, "two logged steps")
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 130, stdout[-2000:] + stderr[-2000:]
    run_dir = only_new(runs)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
    # the newest checkpoint is at the step reached (the last one logged), whatever save_steps had saved
    checkpoint = max((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    assert 2 <= step < 8 and checkpoint.name == f"checkpoint-{step}" and step == logged_steps(run_dir)[-1]
    assert (checkpoint / "optimizer.pt").is_file() and (checkpoint / "adapter_model.safetensors").is_file()
    assert f"{name} during training: checkpoint saved at {checkpoint}" in stderr
    resume = shlex.join(["fasttune", *args, f"train.resume={run_dir}"])
    assert f"Resume with: {resume}" in stderr
    return run_dir, step, shlex.split(resume)[1:]


def kill_9_after_a_checkpoint(args, runs, after: int):
    """Start `fasttune ARGS` (a resume) and SIGKILL it once it has saved a checkpoint beyond step `after`."""
    known = set(runs.iterdir())
    process = subprocess.Popen([sys.executable, "-m", "fasttune.cli", *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def saved_beyond() -> bool:
        return any(int(p.parent.name.rsplit("-", 1)[1]) > after
                   for p in runs.glob("*/checkpoints/checkpoint-*/trainer_state.json") if p.parents[2] not in known)

    wait_for(saved_beyond, process, f"a checkpoint after step {after}")
    process.kill()  # SIGKILL: nothing in the process runs after this
    process.wait(timeout=60)
    killed = only_new(runs, known)
    assert not (killed / "adapter").exists()  # it really died before the end
    assert logged_steps(killed)[0] == after + 1  # it had resumed after the checkpoint it was given
    return killed


def assert_ends_where_the_straight_run_ended(resumed, straight, start_step: int) -> None:
    from safetensors.torch import load_file

    after = {s: v for s, v in losses(straight).items() if s > start_step}
    assert after and losses(resumed) == pytest.approx(after, abs=1e-4)
    a = load_file(straight / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-5, key


def signal_in_step(process: subprocess.Popen, find_status, step: str, signum: int) -> tuple[str, str]:
    """Send `signum` once status.json (`find_status()`, None until it exists) says `step` is 'running';
    return the process's (stdout, stderr)."""
    def running() -> bool:
        status = find_status()
        return status is not None and json.loads(status.read_text()).get(step) == "running"  # written whole

    wait_for(running, process, f"its {step} started")
    process.send_signal(signum)
    return process.communicate(timeout=600)


def printed_command(stderr: str, lead: str) -> list[str]:
    """The command after `lead` in a message, as argv without `fasttune`."""
    line = next(line for line in stderr.splitlines() if lead in line)
    return shlex.split(line.split(lead, 1)[1])[1:]


def interrupt_the_evaluation_then_the_export(args, runs):
    """`fasttune ARGS` (a recipe with an export), SIGTERM in its evaluation after training: the adapter is
    kept and `fasttune eval` completes the evaluation; then Ctrl-C in the export it names: nothing
    half-written, and the same command completes it. Returns the run folder."""
    known = set(runs.iterdir())
    process = start(args)

    def new_status():
        found = [p / "status.json" for p in runs.iterdir() if p not in known and (p / "status.json").is_file()]
        return found[0] if found else None

    stdout, stderr = signal_in_step(process, new_status, "evaluation", signal.SIGTERM)
    assert process.returncode == 130, stdout[-2000:] + stderr[-2000:]
    run_dir = only_new(runs, known)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished" and status["evaluation"] == "interrupted", status
    assert "Traceback" not in stderr and f"weights are saved in {run_dir / 'adapter'}" in stderr
    assert json.loads((run_dir / "eval.json").read_text())["after"] is None
    assert "export did not run" in stderr  # the recipe's export is named too

    redo = printed_command(stderr, "Redo it with: ")
    assert redo == ["eval", str(run_dir)]
    result = invoke(*redo)  # in this process: the hf backend needs no Unsloth first
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "eval.json").read_text())
    assert summary["after"]["eval_loss"] < summary["before"]["eval_loss"]  # the saved adapter is the trained one
    assert (run_dir / "samples.md").read_text().count("**after:**") == 4
    assert json.loads((run_dir / "status.json").read_text())["evaluation"] == "done"

    export = printed_command(stderr, "then: ")
    assert export[:4] == ["export", str(run_dir), "--to", "gguf"]
    process = start(export)
    stdout, stderr = signal_in_step(process, lambda: run_dir / "status.json", "export", signal.SIGINT)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert json.loads((run_dir / "status.json").read_text())["export"] == "interrupted"
    assert not list((run_dir / "export").glob("*.gguf")) and not list((run_dir / "export").glob(".*"))
    result = invoke(*export)
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished" and status["export"] == "done" and "export_error" not in status
    [gguf] = json.loads((run_dir / "export" / "export.json").read_text())["exports"]
    assert gguf["verification"]["total_tokens"] > 0
    return run_dir


def resume_start(run_dir) -> int:
    return int(json.loads((run_dir / "eval.json").read_text())["resumed_from"].rsplit("-", 1)[1])


def test_sigterm_then_kill_9_then_resume_ends_where_an_uninterrupted_run_ends_hf(chat_run_hf, tmp_path):
    runs = tmp_path / "runs"
    # eval.drift off: these stories are about training and its files, and the drift test reads chat_run_hf
    args = [*chat_run_hf.args[:-1], "eval.drift=false", "log.report_to=[]", f"log.runs_dir={runs}"]
    _, step, resume = stop_with_a_signal(args, runs, signal.SIGTERM, "SIGTERM")
    killed = kill_9_after_a_checkpoint(resume, runs, after=step)

    # the last resume, asked to export too and to write more samples: its evaluation after training and
    # its export are interrupted, then completed by the commands the messages print
    last = [*resume[:-1], f"train.resume={killed}", "eval.samples=4", "eval.max_new_tokens=32",
            "export.formats=[gguf]", "export.verify_prompts=1"]
    resumed = interrupt_the_evaluation_then_the_export(last, runs)
    assert 4 <= resume_start(resumed) < 8
    assert_ends_where_the_straight_run_ended(resumed, chat_run_hf.path, resume_start(resumed))


def test_ctrl_c_then_resume_ends_where_an_uninterrupted_run_ends_unsloth(chat_run_unsloth, tmp_path):
    """kill -9 is the hf story's alone: what it leaves is the Trainer's last checkpoint, whichever backend."""
    runs = tmp_path / "runs"
    args = [*chat_run_unsloth.args[:-1], "eval.drift=false", "log.report_to=[]", f"log.runs_dir={runs}"]
    _, step, resume = stop_with_a_signal(args, runs, signal.SIGINT, "Ctrl-C")
    known = set(runs.iterdir())
    result = run_cli(*resume)  # the printed command: train.resume is the interrupted run's folder
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = only_new(runs, known)
    assert resume_start(resumed) == step
    assert_ends_where_the_straight_run_ended(resumed, chat_run_unsloth.path, step)


def test_a_non_finite_loss_stops_the_run_and_names_the_last_good_checkpoint(tmp_path):
    runs = tmp_path / "runs"
    # lr 1e30: the first update is finite, the weights after it are not (in this process: hf trains here)
    result = invoke("run", "recipes/chat_sft.py", "model.backend=hf", "model.dtype=float32", "eval.samples=0",
                     "log.report_to=[]", "train.warmup_ratio=0", "train.max_steps=6", "train.save_steps=1",
                     "train.lr=1e30", f"log.runs_dir={runs}")
    assert result.returncode == 2, result.stderr[-3000:]
    [run_dir] = list(runs.iterdir())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    records = read_metrics(run_dir / "metrics.jsonl")  # non-finite values are written as "NaN"/"Infinity"
    bad = next(r for r in records if "loss" in r and not all(map(math.isfinite, (r["loss"], r.get("grad_norm", 0)))))
    saved = sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    assert f"checkpoint-{bad['step']}" not in saved and saved  # the poisoned step was never saved
    last = run_dir / "checkpoints" / saved[-1]
    assert f"at step {bad['step']}" in result.stderr and "learning rate" in result.stderr
    assert f"The last good checkpoint is {last}" in result.stderr
    assert not (run_dir / "adapter").exists() and not (run_dir / "eval.json").exists()
    assert os.path.isfile(last / "trainer_state.json")
