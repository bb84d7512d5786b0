"""DPO, the task added through the task contract alone: its data checks, and a short real run (the dpo
notebook's) whose preference accuracy is recomputed here from the trained adapter's own log-probabilities."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers import first_rows, invoke

EVAL_PAIRS = 8


def test_a_preference_loss_fasttune_does_not_run_is_refused_in_a_recipe_file_too():
    from fasttune.errors import ConfigError
    from fasttune.tasks import DPO

    with pytest.raises(ConfigError, match="task.loss_type must be one of sigmoid, ipo, hinge, robust, orpo, simpo, "
                                          "got 'kto'"):
        DPO(loss_type="kto")  # a recipe file builds the task itself: no override parser to catch it


def test_building_a_trainer_does_not_hash_what_its_dataset_maps_are_given():
    """TRL's DPO and KTO trainers map their datasets with the tokenizer as an argument; `datasets` would
    pickle it to hash the map (seconds for Gemma 3's vocabulary). While fasttune builds a trainer
    (trainer/build.py's unhashed_maps), maps run as before and nothing given to them is pickled."""
    import datasets

    from fasttune.trainer.build import unhashed_maps

    pickled = []

    class Tokenizer:  # stands for the tokenizer: records each time it is pickled
        def __reduce__(self):
            pickled.append(1)
            return Tokenizer, ()

    def double(row, tokenizer):
        return {"x": row["x"] * 2}

    rows = datasets.Dataset.from_list([{"x": 1}, {"x": 2}])
    with unhashed_maps():
        assert rows.map(double, fn_kwargs={"tokenizer": Tokenizer()})["x"] == [2, 4]
    assert pickled == []
    assert rows.map(double, fn_kwargs={"tokenizer": Tokenizer()})["x"] == [2, 4]
    assert pickled  # outside it, datasets hashes the argument


@pytest.mark.parametrize("row, where", [
    ({"prompt": "Hi", "chosen": "Hello.", "rejected": "Hello."}, "rejected: is the same as chosen"),
    ({"prompt": "Hi", "chosen": "Hello."}, "rejected: missing (this row has: chosen, prompt)"),
    ({"prompt": "", "chosen": "a", "rejected": "b"}, "prompt: must be a non-empty string or a list of messages"),
    ({"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"}, "prompt[0]: must be an object with string role"),
    ({"prompt": "Hi", "chosen": 3, "rejected": "b"}, "chosen: must be a string, got int"),
])
def test_bad_pairs_are_named_by_file_line_and_field(row, where, tmp_path):
    good = {"prompt": "What is 2 + 2?", "chosen": "4.", "rejected": "5."}
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in (good, good, row, good)) + "\n")
    result = invoke("run", "recipes/dpo.py", f"data.path={data}", f"data.eval={data}", f"log.runs_dir={tmp_path / 'runs'}")
    assert result.returncode == 2 and f"{data}:3: {where}" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def dpo_run(notebook_run, tmp_path_factory):
    """The dpo notebook's run (a few steps, tests/helpers.py NOTEBOOK_CI): preference accuracy on the first
    EVAL_PAIRS held-out pairs, which eval_file holds."""
    run_dir = notebook_run("dpo").path
    eval_file = first_rows("recipes/data/pref_eval.jsonl", EVAL_PAIRS, tmp_path_factory.mktemp("dpo") / "pairs_eval.jsonl")
    return run_dir, json.loads((run_dir / "eval.json").read_text()), eval_file


@pytest.mark.e2e
def test_dpo_moves_the_model_toward_chosen(dpo_run):
    run_dir, summary, _ = dpo_run
    before, after = summary["before"], summary["after"]
    assert summary["task"] == "dpo" and before["rows"] == after["rows"] == EVAL_PAIRS
    assert after["mean_p_chosen"] > before["mean_p_chosen"]
    assert after["eval_loss"] < before["eval_loss"]  # DPO's own held-out loss, from trainer.evaluate()
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert all(v.abs().max() > 0 for k, v in weights.items() if "lora_B" in k)
    # fasttune's token count: chosen and rejected sequences seen, their replies trained
    assert 0 < summary["trained_tokens"] < summary["train_tokens"]


@pytest.mark.e2e
def test_preference_accuracy_is_the_models_own_log_probability_comparison(dpo_run):
    """Recomputed here without fasttune's scoring: full sequences through the reloaded adapter, the
    log-probability of each reply's tokens summed after the rendered prompt."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fasttune import models

    run_dir, summary, eval_file = dpo_run
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
    base = AutoModelForCausalLM.from_pretrained(models.resolve(models.EMBEDDED), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, run_dir / "adapter").eval()

    def reply_logprob(prompt: list[dict], reply: str) -> float:
        head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": reply}], tokenize=False)
        assert full.startswith(head)
        ids = tokenizer(full, add_special_tokens=False, return_tensors="pt").input_ids
        start = len(tokenizer(head, add_special_tokens=False).input_ids)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:]
        # every token after the prompt: the reply and the end of its turn, as the template renders them
        return float(logp[start - 1:].gather(-1, targets[start - 1:, None]).sum())

    pairs = [json.loads(line) for line in eval_file.read_text().splitlines()]
    wins = [reply_logprob([{"role": "user", "content": p["prompt"]}], p["chosen"])
            > reply_logprob([{"role": "user", "content": p["prompt"]}], p["rejected"]) for p in pairs]
    assert summary["after"]["preference_accuracy"] == round(sum(wins) / len(wins), 4)
    samples = (run_dir / "samples.md").read_text()
    assert samples.count("- **after:** prefers ") == 4 and "chosen: " in samples
