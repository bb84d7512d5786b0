"""A finished training is never lost: the adapter is saved and the run marked finished before the
evaluation after training and the export start, so SIGTERM or Ctrl-C in either keeps it, status.json
says which step stopped, and the command the message prints completes that step."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT, run_cli

pytestmark = pytest.mark.e2e  # trains the embedded model for a few steps


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fasttune.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def signal_when(process: subprocess.Popen, folder, pattern: str, key: str, signum: int) -> tuple[str, str]:
    """Send `signum` once the status.json found by `folder.glob(pattern)` says `key` is 'running';
    return the process's (stdout, stderr)."""
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        found = list(folder.glob(pattern)) if folder.is_dir() else []
        if found and json.loads(found[0].read_text()).get(key) == "running":  # written whole, then renamed
            break
        time.sleep(0.02)
    process.send_signal(signum)
    return process.communicate(timeout=600)


def printed_command(stderr: str, lead: str) -> list[str]:
    """The command after `lead` in the message, as argv for run_cli (without `fasttune`)."""
    line = next(line for line in stderr.splitlines() if lead in line)
    return shlex.split(line.split(lead, 1)[1])[1:]


def test_sigterm_during_the_evaluation_after_training_keeps_the_adapter_and_fasttune_eval_completes(tmp_path):
    runs = tmp_path / "runs"
    process = start("run", "recipes/chat_sft.py", "model.backend=hf", "model.dtype=float32", "train.max_steps=3",
                    "log.report_to=[]", f"log.runs_dir={runs}", "eval.samples=8", "eval.max_new_tokens=64",
                    "export.formats=[gguf]", "export.verify_prompts=1")
    stdout, stderr = signal_when(process, runs, "*/status.json", "evaluation", signal.SIGTERM)
    assert process.returncode == 130, stdout[-2000:] + stderr[-2000:]
    [run_dir] = list(runs.iterdir())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished" and status["evaluation"] == "interrupted", status
    assert "Traceback" not in stderr and f"adapter is saved in {run_dir / 'adapter'}" in stderr
    assert json.loads((run_dir / "eval.json").read_text())["after"] is None
    assert "export did not run" in stderr  # the recipe's export is named too

    redo = printed_command(stderr, "Redo it with: ")
    assert redo == ["eval", str(run_dir)]
    result = run_cli(*redo)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "eval.json").read_text())
    assert summary["after"]["eval_loss"] < summary["before"]["eval_loss"]  # the saved adapter is the trained one
    assert (run_dir / "samples.md").read_text().count("**after:**") == 8
    assert json.loads((run_dir / "status.json").read_text())["evaluation"] == "done"

    # Ctrl-C during the export: nothing half-written, status says so, the printed command finishes it
    export_cmd = printed_command(stderr, "then: ")
    assert export_cmd[:4] == ["export", str(run_dir), "--to", "gguf"]
    process = start(*export_cmd)
    stdout, stderr = signal_when(process, run_dir, "status.json", "export", signal.SIGINT)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert json.loads((run_dir / "status.json").read_text())["export"] == "interrupted"
    assert not list((run_dir / "export").glob("*.gguf")) and not list((run_dir / "export").glob(".*"))
    result = run_cli(*export_cmd)
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished" and status["export"] == "done" and "export_error" not in status
    [gguf] = json.loads((run_dir / "export" / "export.json").read_text())["exports"]
    assert gguf["verification"]["total_tokens"] > 0
