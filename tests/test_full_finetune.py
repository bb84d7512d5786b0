"""Full fine-tuning (model.full_finetune): refused before anything loads where it cannot work, and one run
of a few steps in this process (the hf backend), read back from what the trainer held, the weights it
saved, how they reload and what their export answers."""

from __future__ import annotations

import json
import re

import pytest

from helpers import ROOT, first_rows, invoke, run_cli

FULL = ("model.full_finetune=true", "model.load_in_4bit=false")


@pytest.mark.parametrize(("extra", "said"), [
    (("model.full_finetune=true",), "model.full_finetune trains every weight, and 4-bit weights cannot be trained: "
                                    "set model.load_in_4bit=false"),
    ((*FULL, "model.lora.use_dora=true"), "model.lora.use_dora: LoRA settings, and model.full_finetune trains no LoRA"),
    ((*FULL, "export.formats=[adapter]"), "a fully fine-tuned run (model.full_finetune) has no LoRA adapter"),
])
def test_what_cannot_work_is_refused_before_any_model_loads(extra, said, tmp_path):
    result = invoke("run", "recipes/chat_sft.py", *extra, f"log.runs_dir={tmp_path / 'runs'}")
    assert result.returncode == 2 and said in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "runs").exists()  # no run folder: nothing started


def test_kto_is_refused_since_its_metric_needs_the_starting_model(tmp_path):
    result = invoke("run", "recipes/kto.py", *FULL, f"log.runs_dir={tmp_path / 'runs'}")
    assert result.returncode == 2 and "model.full_finetune: KTO's held-out metric" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_lora_checkpoint_cannot_continue_a_full_fine_tuning(tmp_path):
    from fasttune.checkpoints import resume_differences
    from fasttune.recipe import apply_overrides, load_recipe

    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2, "epoch": 0.1}))
    (checkpoint / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 16}))
    config = apply_overrides(load_recipe(ROOT / "recipes/chat_sft.py"), [*FULL, "train.max_steps=10"]).to_dict()
    assert resume_differences(checkpoint, config) == [
        "model.full_finetune: the checkpoint holds LoRA weights, this run trains every weight"]


def test_plan_counts_a_gradient_and_two_adamw_moments_for_every_weight():
    from fasttune import plan
    from fasttune.recipe import apply_overrides, load_recipe

    lora = load_recipe(ROOT / "recipes/chat_sft.py")
    shape = plan.memory.Shape.from_config(plan.model_config(lora.model.name), lora.model.name)
    for dtype, per_param in (("auto", 16), ("bfloat16", 8)):  # float32 master weights unless 16-bit asked for
        full = apply_overrides(load_recipe(ROOT / "recipes/chat_sft.py"), [*FULL, f"model.dtype={dtype}"])
        peak = plan.peak(full, shape, "unsloth", 512, 1)
        assert peak.weights + peak.trained == per_param * shape.params()
    lora_peak = plan.peak(lora, shape, "unsloth", 512, 1)
    assert lora_peak.trained < shape.params()  # LoRA's state is a small fraction of one copy of the weights
    assert "gradients + AdamW" in invoke("plan", "recipes/chat_sft.py", *FULL, "--gpu", "8GB").stdout


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    held_out = first_rows("recipes/data/chat_eval.jsonl", 4, tmp / "eval.jsonl")
    result = invoke("run", "recipes/chat_sft.py", "model.backend=hf", *FULL, "train.max_steps=3",
                    "train.batch_size=2", "train.lr=2e-5", "train.warmup_ratio=0", "eval.samples=2",
                    "eval.max_new_tokens=8", "eval.drift=false", "log.report_to=[]", f"data.eval={held_out}",
                    "export.formats=[merged,gguf]", "export.verify_prompts=2", "export.verify_tokens=8",
                    f"log.runs_dir={tmp / 'runs'}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run] = list((tmp / "runs").iterdir())
    return run


@pytest.mark.e2e
def test_every_weight_reached_the_trainer_and_changed(full_run):
    from safetensors.torch import load_file

    from fasttune import models
    from fasttune.recipe import Recipe

    built = json.loads((full_run / "trainer_args.json").read_text())["model"]  # read from the trainer's model
    assert built["lora"] is False and built["trainable_parameters"] == built["parameters"] > 100_000_000
    assert Recipe.from_dict(json.loads((full_run / "config.json").read_text())).model.full_finetune  # on record
    assert (full_run / "model").is_dir() and not (full_run / "adapter").exists()
    trained = load_file(full_run / "model" / "model.safetensors")
    base = load_file(f"{models.resolve(models.EMBEDDED)}/model.safetensors")
    assert trained.keys() == base.keys()
    unchanged = [name for name in base if trained[name].equal(base[name].to(trained[name].dtype))]
    assert not unchanged, unchanged[:5]  # embeddings and norms trained too, not only the linear layers
    summary = json.loads((full_run / "eval.json").read_text())
    assert summary["after"]["eval_loss"] < summary["before"]["eval_loss"] - 0.3  # 4 held-out rows


@pytest.mark.e2e
def test_the_saved_weights_reload_and_answer_as_trained(full_run):
    from fasttune.generate import generate
    from fasttune.run_folder import open_run

    model, tokenizer = open_run(full_run).load_model()
    assert not hasattr(model, "peft_config")
    prompts = [p["text"] for p in json.loads((full_run / "eval_prompts.json").read_text())[:2]]
    after = re.findall(r"\*\*after:\*\* (.*)", (full_run / "samples.md").read_text())
    assert generate(model, tokenizer, prompts, 8) == [a.strip() for a in after]


@pytest.mark.e2e
def test_the_export_is_the_trained_weights_in_16_bit_and_the_gguf_answers_as_they_do(full_run):
    from safetensors.torch import load_file

    exports = {e["format"]: e for e in json.loads((full_run / "export" / "export.json").read_text())["exports"]}
    assert str(full_run / "model") in exports["merged"]["base_weights"] and exports["merged"]["dtype"] == "float16"
    merged = load_file(full_run / "export" / "merged" / "model.safetensors")
    trained = load_file(full_run / "model" / "model.safetensors")
    assert merged.keys() == trained.keys() and all(merged[n].equal(trained[n].half()) for n in trained)
    gguf = exports["gguf"]
    assert not gguf["template_conformance"]["problems"]
    verified = gguf["verification"]
    assert verified["total_tokens"] == 16 and verified["matched_tokens"] >= 15  # 2 prompts x 8 greedy tokens
    refused = invoke("export", str(full_run), "--to", "adapter")
    assert refused.returncode == 2 and "has no LoRA adapter: export 'merged'" in refused.stderr


@pytest.mark.e2e
def test_eval_redone_from_the_run_folder_loads_the_trained_weights(full_run):
    after = json.loads((full_run / "eval.json").read_text())["after"]["eval_loss"]
    result = invoke("eval", str(full_run))  # model/ put back on a freshly loaded model (session.load_trained_weights)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((full_run / "eval.json").read_text())["after"]["eval_loss"] == pytest.approx(after, abs=1e-3)


@pytest.mark.e2e
def test_the_unsloth_backend_trains_every_weight_in_float32_with_autocast_where_the_cpu_has_bf16(tmp_path):
    """One step in a fresh process (Unsloth must be imported before transformers): Unsloth's loader with
    full_finetuning, float32 weights as fasttune asks, and bf16 autocast exactly where this CPU computes bf16."""
    from fasttune.precision import cpu_native_bf16

    held_out = first_rows("recipes/data/chat_eval.jsonl", 2, tmp_path / "eval.jsonl")
    result = run_cli("run", "recipes/chat_sft.py", "model.backend=unsloth", *FULL, "train.max_steps=1",
                     "train.batch_size=2", "train.lr=2e-5", "train.warmup_ratio=0", "eval.samples=0", "eval.drift=false",
                     "log.report_to=[]", f"data.eval={held_out}", f"log.runs_dir={tmp_path / 'runs'}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "dtype = torch.float32" in result.stdout + result.stderr  # Unsloth's own report of what it loaded
    [run] = list((tmp_path / "runs").iterdir())
    built = json.loads((run / "trainer_args.json").read_text())
    assert built["model"]["lora"] is False and built["model"]["trainable_parameters"] == built["model"]["parameters"]
    assert built["args"]["bf16"] is cpu_native_bf16() and built["args"]["fp16"] is False
    summary = json.loads((run / "eval.json").read_text())
    assert summary["backend"] == "unsloth" and summary["after"]["eval_loss"] < summary["before"]["eval_loss"]
