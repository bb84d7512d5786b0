"""Two processes over gloo on this CPU, launched with docs/distributed.md's own commands (`accelerate
launch` and `torchrun`, DDP): one run folder written by rank 0, loss that falls, the same LoRA weights
on both ranks, a checkpoint of the two-process run resumed by a one-process run, and the Unsloth
backend."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from fasttune.distributed import weights_sha256
from helpers import ROOT, invoke

pytestmark = pytest.mark.e2e  # trains the embedded model for a few steps, twice

STEPS = 4
SHORT = [f"train.max_steps={STEPS}", "train.batch_size=2", "train.save_steps=2", "train.warmup_ratio=0",
         "eval.samples=2", "eval.max_new_tokens=8", "eval.drift_prompts=2", "log.report_to=[]"]


LAUNCHERS = {"accelerate": "accelerate.commands.launch", "torchrun": "torch.distributed.run"}


def readme_command(start: str) -> str:
    """docs/distributed.md's two-process CPU command that starts with `start` (exactly one line does)."""
    [command] = re.findall(rf"^{re.escape(start)} .+$", (ROOT / "docs" / "distributed.md").read_text(),
                           flags=re.MULTILINE)
    return command


def launch(start: str, runs, *overrides: str) -> subprocess.CompletedProcess:
    """That command, run with this interpreter's launcher module, a few steps into `runs`."""
    assignment, launcher, *args = shlex.split(readme_command(start))
    name, value = assignment.split("=")
    if launcher == "accelerate":
        assert args.pop(0) == "launch"
    command = [sys.executable, "-m", LAUNCHERS[launcher], *args, *overrides, f"log.runs_dir={runs}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, name: value})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs-ddp")
    return runs, launch("OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2", runs, *SHORT).stdout


def test_one_run_folder_written_once(two_process_run):
    runs, stdout = two_process_run
    [run_dir] = list(runs.iterdir())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    assert stdout.count("Run folder:") == 2  # rank 0's "Run folder: ..." and "Finished ... Run folder: ..."
    assert "batch 2 x 1 x 2 processes = 4 rows per step" in stdout
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, STEPS + 1))  # one writer
    assert [r["step"] for r in records if "eval_loss" in r] == [0, STEPS]  # evaluated once before, once after
    assert (run_dir / "samples.md").read_text().count("- **after:**") == 2
    for step in (2, 4):  # each rank's RNG state goes into the one checkpoint folder
        names = {p.name for p in (run_dir / "checkpoints" / f"checkpoint-{step}").iterdir()}
        assert {"rng_state_0.pth", "rng_state_1.pth", "adapter_model.safetensors", "optimizer.pt"} <= names


def test_loss_falls_and_tokens_are_the_jobs(two_process_run):
    runs, _ = two_process_run
    [run_dir] = list(runs.iterdir())
    summary = json.loads((run_dir / "eval.json").read_text())
    assert summary["processes"] == 2 and summary["effective_batch"] == 4 and summary["steps"] == STEPS
    assert summary["after"]["eval_loss"] < summary["before"]["eval_loss"] - 0.3, summary
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    # TRL gathers its own token count over the processes: fasttune's sum must agree with it
    assert [r["tokens"] for r in records] == [int(r["num_tokens"]) for r in records]
    assert records[-1]["tokens"] == summary["train_tokens"]
    assert summary["tokens_per_second"] == pytest.approx(summary["train_tokens"] / summary["train_runtime_s"], rel=0.05)


def test_both_ranks_end_with_the_saved_lora_weights(two_process_run):
    runs, _ = two_process_run
    [run_dir] = list(runs.iterdir())
    per_rank = json.loads((run_dir / "eval.json").read_text())["weights_sha256_per_rank"]
    saved = weights_sha256(load_file(run_dir / "adapter" / "adapter_model.safetensors"))
    before = weights_sha256(load_file(run_dir / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors"))
    assert per_rank == [saved, saved] and before != saved  # trained, and identical on rank 0 and rank 1


def test_a_two_process_checkpoint_resumes_on_one_process(two_process_run, tmp_path):
    runs, _ = two_process_run
    [run_dir] = list(runs.iterdir())
    checkpoint = run_dir / "checkpoints" / "checkpoint-2"
    result = invoke("run", "recipes/chat_sft.py", "model.backend=hf", *SHORT, "eval.samples=0",  # in this process
                    f"log.runs_dir={tmp_path}", f"train.resume={checkpoint}")
    assert result.returncode == 0, result.stderr[-3000:]
    [resumed] = list(tmp_path.iterdir())
    summary = json.loads((resumed / "eval.json").read_text())
    assert summary["processes"] == 1 and summary["steps"] == STEPS and summary["resumed_from"] == str(checkpoint)
    first = json.loads((run_dir / "eval.json").read_text())
    assert summary["before"]["eval_loss"] < first["before"]["eval_loss"] - 0.3  # started from the checkpoint
    losses = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert losses == [3, 4]  # only the steps after the checkpoint


def test_the_unsloth_backend_runs_ddp_through_torchrun(tmp_path):
    """Unsloth itself runs DDP (its CPU fallback here): the default backend, launched by torchrun."""
    result = launch("OMP_NUM_THREADS=1 torchrun --nproc_per_node 2", tmp_path, "train.max_steps=2",
                    "train.batch_size=2", "eval.samples=0", "eval.drift=false", "log.report_to=[]")
    assert "Backend: unsloth" in result.stdout and "Processes: 2 (DDP)" in result.stdout
    [run_dir] = list(tmp_path.iterdir())
    summary = json.loads((run_dir / "eval.json").read_text())
    assert summary["backend"] == "unsloth" and summary["processes"] == 2 and summary["steps"] == 2
    saved = weights_sha256(load_file(run_dir / "adapter" / "adapter_model.safetensors"))
    assert summary["weights_sha256_per_rank"] == [saved, saved]
