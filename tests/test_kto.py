"""KTO, preference training from single replies marked good or bad: its settings and data checks, and a
short real run (the kto notebook's) whose metric is recomputed here from the trained adapter's own
log-probabilities, with the options read back from the trainer that ran."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import first_rows, invoke

EVAL_ROWS = 8  # NOTEBOOK_CI["kto"]: the first 8 held-out replies, 4 desirable and 4 not


@pytest.mark.parametrize("fields, said", [
    ({"beta": 0}, "task.beta must be positive, got 0"),
    ({"undesirable_weight": -1}, "task.desirable_weight and task.undesirable_weight must be positive"),
])
def test_kto_settings_are_checked_in_a_recipe_file_too(fields, said):
    from fasttune.errors import ConfigError
    from fasttune.tasks import KTO

    with pytest.raises(ConfigError, match=said):
        KTO(**fields)


def test_unbalanced_replies_are_noted_with_the_weights_that_balance_them(tmp_path):
    rows = [{"prompt": "What is 2 + 2?", "completion": "4", "label": True}] + \
        [{"prompt": "What is 2 + 2?", "completion": f"It is {n}.", "label": False} for n in range(5, 9)]
    data = tmp_path / "replies.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke("check", "recipes/kto.py", f"data.path={data}", f"data.eval={data}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Replies: 1 desirable, 4 undesirable" in result.stdout
    assert "desirable weight x count is 0.25 times the undesirable side's" in result.stdout, result.stdout


@pytest.fixture(scope="module")
def kto_run(notebook_run, tmp_path_factory):
    run_dir = notebook_run("kto").path
    eval_file = first_rows("recipes/data/kto_eval.jsonl", EVAL_ROWS, tmp_path_factory.mktemp("kto") / "kto_eval.jsonl")
    return run_dir, json.loads((run_dir / "eval.json").read_text()), eval_file


@pytest.mark.e2e
def test_kto_raises_desirable_replies_against_undesirable_ones(kto_run):
    from safetensors.torch import load_file

    run_dir, summary, _ = kto_run
    before, after = summary["before"], summary["after"]
    assert summary["task"] == "kto" and before["rows"] == after["rows"] == EVAL_ROWS
    # before training the tuned model is the starting model: every reward is 0, no sign is right
    assert before["mean_reward_desirable"] == before["mean_reward_undesirable"] == 0 and before["kto_accuracy"] == 0
    assert after["mean_reward_desirable"] > after["mean_reward_undesirable"]
    assert after["eval_loss"] < before["eval_loss"]  # KTO's own held-out loss, from trainer.evaluate()
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert all(v.abs().max() > 0 for k, v in weights.items() if "lora_B" in k)
    assert 0 < summary["trained_tokens"] < summary["train_tokens"]  # replies trained; KL partners and prompts seen


@pytest.mark.e2e
def test_the_reward_is_the_models_own_log_probability_against_the_start(kto_run):
    """Recomputed here without fasttune's scoring: each reply's tokens after the rendered prompt, summed
    through the reloaded adapter and through the same model with the adapter switched off."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fasttune import models

    run_dir, summary, eval_file = kto_run
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
    base = AutoModelForCausalLM.from_pretrained(models.resolve(models.EMBEDDED), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, run_dir / "adapter").eval()

    def reply_logprob(prompt: list[dict], reply: str) -> float:
        head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": reply}], tokenize=False)
        ids = tokenizer(full, add_special_tokens=False, return_tensors="pt").input_ids
        start = len(tokenizer(head, add_special_tokens=False).input_ids)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        return float(logp[start - 1:].gather(-1, ids[0, start:, None]).sum())

    rows = [json.loads(line) for line in eval_file.read_text().splitlines()]
    rewards = []
    for row in rows:
        prompt = [{"role": "user", "content": row["prompt"]}]
        tuned = reply_logprob(prompt, row["completion"])
        with model.disable_adapter():
            rewards.append(tuned - reply_logprob(prompt, row["completion"]))
    right = [(r > 0) if row["label"] else (r < 0) for r, row in zip(rewards, rows)]
    after = summary["after"]
    assert after["kto_accuracy"] == round(sum(right) / len(right), 4)
    desirable = [r for r, row in zip(rewards, rows) if row["label"]]
    assert after["mean_reward_desirable"] == pytest.approx(sum(desirable) / len(desirable), abs=2e-3)


@pytest.mark.e2e
def test_the_options_reached_the_trainer_and_rebuild_from_config(kto_run):
    from fasttune.recipe import Recipe
    from fasttune.tasks import KTO

    run_dir, _, _ = kto_run
    built = json.loads((run_dir / "trainer_args.json").read_text())
    assert built["trainer"].endswith("KTOTrainer"), built["trainer"]
    assert (built["args"]["beta"], built["args"]["desirable_weight"], built["args"]["undesirable_weight"]) == \
        (0.2, 1.2, 1.0)  # NOTEBOOK_CI's overrides, not the recipe's 0.1 and 1.0
    config = json.loads((run_dir / "config.json").read_text())
    assert Recipe.from_dict(config).task == KTO(beta=0.2, desirable_weight=1.2)
