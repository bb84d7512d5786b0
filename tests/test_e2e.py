"""End to end, once per backend: `fasttune run recipes/chat_sft.py` for a few steps on the embedded
SmolLM2-135M, in a fresh process (the session's CHAT_RUN, tests/helpers.py), then checks of what it
left behind; and a resume from its checkpoints."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from helpers import FAKE_KEY, invoke

pytestmark = pytest.mark.e2e  # trains or converts the embedded model: minutes on CPU

STEPS = 8  # CHAT_RUN's train.max_steps


@pytest.fixture(params=["unsloth", "hf"])
def finished_run(request):
    """The session's CHAT_RUN on each backend (tests/conftest.py): (backend, run folder, output)."""
    run = request.getfixturevalue(f"chat_run_{request.param}")
    return request.param, run.path, run.output


def test_run_folder_is_complete_and_finished(finished_run):
    backend, run_dir, stdout = finished_run
    for name in ("config.json", "metrics.jsonl", "loss.png", "eval.json", "samples.md", "status.json",
                 "adapter/adapter_model.safetensors", "adapter/adapter_config.json", "adapter/chat_template.jinja"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    assert json.loads((run_dir / "config.json").read_text())["model"]["backend"] == backend
    assert json.loads((run_dir / "eval.json").read_text())["backend"] == backend
    assert f"Run folder: {run_dir}" in stdout


def test_loss_falls(finished_run):
    _, run_dir, _ = finished_run
    summary = json.loads((run_dir / "eval.json").read_text())
    assert summary["steps"] == STEPS
    assert summary["after"]["eval_loss"] < summary["before"]["eval_loss"] - 0.3, summary
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == STEPS
    assert min(losses[-2:]) < losses[0], losses
    assert all(r["tokens_per_second"] > 0 for r in records if "loss" in r)


def test_tokens_are_counted_by_fasttune_on_every_backend(finished_run):
    _, run_dir, stdout = finished_run
    summary = json.loads((run_dir / "eval.json").read_text())
    assert 0 < summary["trained_tokens"] < summary["train_tokens"]  # chat SFT: loss on assistant turns only
    assert summary["tokens_per_second"] == pytest.approx(summary["train_tokens"] / summary["train_runtime_s"], rel=0.05)
    assert summary["train_peak_gpu_memory_gib"] is None  # no GPU here
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    counts = [r["tokens"] for r in records if "loss" in r]
    assert counts == sorted(counts) and counts[-1] == summary["train_tokens"]
    assert "seem to have been set" not in stdout  # generation warns no more (Unsloth set max_length)
    # eval before training (step 0), every train.eval_steps=4 steps, and after training
    assert [r["step"] for r in records if "eval_loss" in r] == [0, 4, 8, 8]


def test_lora_weights_changed(finished_run):
    _, run_dir, _ = finished_run
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert len(lora_b) == 30 * 7  # 30 layers x 7 projections
    # LoRA initialises B to zero: every B that moved was trained.
    assert all(v.abs().max() > 0 for v in lora_b.values())


def test_adapter_reloads_on_the_base_model_and_answers_as_trained(finished_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fasttune import models
    from fasttune.generate import generate

    _, run_dir, _ = finished_run
    base_path = models.resolve(models.EMBEDDED)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
    # the run's two sample prompts, rendered as the run rendered them, generated as one batch as it did
    prompts = [p["text"] for p in json.loads((run_dir / "eval_prompts.json").read_text())[:2]]
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).eval()
    base_answers = generate(base, tokenizer, prompts, 16)
    model = PeftModel.from_pretrained(base, run_dir / "adapter").eval()
    answers = generate(model, tokenizer, prompts, 16)
    samples = (run_dir / "samples.md").read_text()
    after = re.findall(r"\*\*after:\*\* (.*)", samples)
    assert answers == [a.strip() for a in after]
    assert answers != base_answers


def test_samples_show_before_and_after(finished_run):
    _, run_dir, _ = finished_run
    samples = (run_dir / "samples.md").read_text()
    assert samples.count("**before:**") == 2 and samples.count("**after:**") == 2
    first = json.loads((run_dir / "eval_prompts.json").read_text())[0]["prompt"]  # the first held-out conversation
    assert first[-1]["content"] in samples


def test_wandb_ran_offline_and_the_key_was_never_written(finished_run):
    _, run_dir, stdout = finished_run
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and any(offline[0].rglob("*.wandb"))
    assert f"wandb sync {offline[0]}" in stdout
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_checkpoints_and_resume(chat_run_hf, tmp_path):
    run_a = chat_run_hf.path
    assert sorted(p.name for p in (run_a / "checkpoints").glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-8"]
    after_a = json.loads((run_a / "eval.json").read_text())["after"]["eval_loss"]

    # resolved before the run folder exists: the checkpoint's batch size, and a length that holds every row
    auto = ["data.max_seq_length=auto", "train.batch_size=auto", "eval.samples=0", "eval.drift=false",
            "log.report_to=[]"]
    second = invoke(*chat_run_hf.args[:-1], "train.max_steps=10", f"train.resume={run_a}", *auto,
                    f"log.runs_dir={tmp_path}")  # the hf backend trains in this process too
    assert second.returncode == 0, second.stderr[-3000:]
    [run_b] = list(tmp_path.iterdir())
    config = json.loads((run_b / "config.json").read_text())
    length = config["data"]["max_seq_length"]
    assert config["train"]["batch_size"] == 4 and isinstance(length, int) and length % 64 == 0
    assert f"data.max_seq_length=auto: {length} (longest training row" in second.stdout
    summary = json.loads((run_b / "eval.json").read_text())
    assert summary["resumed_from"] == str(run_a / "checkpoints" / "checkpoint-8")
    assert summary["before"]["eval_loss"] == after_a  # it starts where the first run ended
    steps = [json.loads(line)["step"] for line in (run_b / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [9, 10]


def test_resume_from_a_folder_without_checkpoints_is_refused(tmp_path):
    result = invoke("run", "recipes/chat_sft.py", f"train.resume={tmp_path}", f"log.runs_dir={tmp_path / 'runs'}")
    assert result.returncode == 2
    assert "neither a checkpoint folder nor a run folder with checkpoints" in result.stderr
    assert not (tmp_path / "runs").exists()
