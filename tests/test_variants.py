"""Training variants: LoRA's (DoRA, rsLoRA), GRPO's losses, ORPO and SimPO, each read back from what
the model and the trainer were built with (the adapter's own adapter_config.json and weights,
trainer_args.json), not from the recipe. GRPO's run is the grpo_math notebook's (tests/helpers.py
NOTEBOOK_CI trains it as GSPO); the others train a few steps of their own, in this process (the hf
backend)."""

from __future__ import annotations

import json

import pytest

from helpers import first_rows, invoke

pytestmark = pytest.mark.e2e


def test_dora_and_rslora_reach_the_adapter_and_train(tmp_path):
    from safetensors.torch import load_file

    held_out = first_rows("recipes/data/chat_eval.jsonl", 4, tmp_path / "eval.jsonl")
    result = invoke("run", "recipes/chat_sft.py", "model.backend=hf", "model.dtype=float32", "model.lora.r=8",
                    "model.lora.target_modules=[q_proj,v_proj,down_proj]", "model.lora.use_dora=true", "model.lora.use_rslora=true", "train.max_steps=2",
                    "train.batch_size=2", "train.warmup_ratio=0", "eval.samples=0", "eval.drift=false",
                    "log.report_to=[]", f"data.eval={held_out}", f"log.runs_dir={tmp_path / 'runs'}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run] = list((tmp_path / "runs").iterdir())
    saved = json.loads((run / "adapter" / "adapter_config.json").read_text())  # written by peft from the model
    assert saved["use_dora"] is True and saved["use_rslora"] is True and saved["r"] == 8
    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    magnitudes = [k for k in weights if "lora_magnitude_vector" in k]  # DoRA's per-output-row magnitudes
    assert magnitudes and len(magnitudes) == sum("lora_A" in k for k in weights)
    assert all(v.abs().max() > 0 for k, v in weights.items() if "lora_B" in k)  # trained from B = 0
    summary = json.loads((run / "eval.json").read_text())
    assert summary["after"]["eval_loss"] < summary["before"]["eval_loss"]  # 4 held-out rows, real forward passes


def test_grpo_gspo_reaches_the_trainer(notebook_run):
    run = notebook_run("grpo_math").path
    built = json.loads((run / "trainer_args.json").read_text())
    assert built["trainer"].endswith("GRPOTrainer")  # TRL's class, or Unsloth's compiled copy of it
    args = built["args"]
    assert (args["loss_type"], args["importance_sampling_level"], args["scale_rewards"]) == ("grpo", "sequence", "none")
    assert args["epsilon_high"] == 0.28 and args["num_generations"] == 4
    task = json.loads((run / "config.json").read_text())["task"]
    assert (task["loss_type"], task["importance_sampling_level"]) == ("grpo", "sequence")  # and on record


@pytest.mark.parametrize(("loss", "trainer"), [("orpo", "ORPOTrainer"), ("simpo", "CPOTrainer")])
def test_orpo_and_simpo_train_without_a_reference_and_score_real_pairs(loss, trainer, tmp_path):
    """Two steps on the dpo recipe, in this process (the hf backend): the trainer TRL built, its loss
    settings as it holds them, and preference accuracy from the model's log-probabilities."""
    held_out = first_rows("recipes/data/pref_eval.jsonl", 4, tmp_path / "pairs.jsonl")
    result = invoke("run", "recipes/dpo.py", "model.backend=hf", "model.dtype=float32", f"task.loss_type={loss}",
                    "train.max_steps=2", "train.batch_size=2", "train.lr=1e-3", "eval.samples=0", "eval.drift=false",
                    "log.report_to=[]", f"data.eval={held_out}", f"log.runs_dir={tmp_path / 'runs'}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run] = list((tmp_path / "runs").iterdir())
    built = json.loads((run / "trainer_args.json").read_text())
    assert built["trainer"].endswith(trainer)
    if loss == "simpo":
        assert (built["args"]["loss_type"], built["args"]["cpo_alpha"]) == ("simpo", 0.0)
    summary = json.loads((run / "eval.json").read_text())
    for phase in ("before", "after"):  # scored on the 4 held-out pairs, each a real comparison
        assert summary[phase]["rows"] == 4 and 0 < summary[phase]["mean_p_chosen"] < 1
    assert summary["after"]["mean_p_chosen"] != summary["before"]["mean_p_chosen"]  # the policy moved
    assert 0 < summary["trained_tokens"] < summary["train_tokens"]  # counted from ORPO's and CPO's own batches


@pytest.mark.parametrize("loss", ["dapo", "bnpo", "dr_grpo"])
def test_grpo_losses_reach_the_trainer_and_score_real_answers(loss, tmp_path):
    """One step of each GRPO loss fasttune passes on (GSPO is the notebook's, above; `grpo` is TRL's
    original), in this process (the hf backend): the loss TRL's trainer holds, and rewards scored on
    the held-out answers the model wrote before and after."""
    held_out = first_rows("recipes/data/math_eval.jsonl", 2, tmp_path / "math.jsonl")
    result = invoke("run", "recipes/grpo_math.py", "model.backend=hf", "model.dtype=float32", f"task.loss_type={loss}",
                    *(["task.scale_rewards=none"] if loss == "dr_grpo" else []), "task.num_generations=2",
                    "task.max_completion_length=8", "train.max_steps=1", "train.batch_size=2", "eval.samples=2",
                    "eval.metric_rows=2", "eval.max_new_tokens=8", "eval.drift=false", "log.report_to=[]",
                    f"data.eval={held_out}", f"log.runs_dir={tmp_path / 'runs'}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run] = list((tmp_path / "runs").iterdir())
    args = json.loads((run / "trainer_args.json").read_text())["args"]
    assert args["loss_type"] == loss and args["num_generations"] == 2
    assert args["scale_rewards"] == ("none" if loss == "dr_grpo" else "group")
    summary = json.loads((run / "eval.json").read_text())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("completions/mean_length", 0) > 0 for r in records)  # the step sampled real completions
    for phase in ("before", "after"):
        assert summary[phase]["rows"] == 2 and set(summary[phase]["rewards"]) >= {"answer_match"}
    import re

    from fasttune.rewards import answer_match

    samples = (run / "samples.md").read_text()  # the 2 answers the rewards scored, recomputed from their text
    answers, refs = re.findall(r"\*\*after:\*\* (.*)", samples), re.findall(r"\*\*reference:\*\* (.*)", samples)
    expected = answer_match("answer")(None, answers, answer=[json.loads(r)["answer"] for r in refs])
    assert len(answers) == 2 and summary["after"]["rewards"]["answer_match"] == round(sum(expected) / 2, 4)
