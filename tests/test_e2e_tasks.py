"""End to end for instruction SFT, continued pre-training, classification, GRPO and function calling:
the run each recipe's notebook trained (a few steps on the embedded model, tests/conftest.py's
`notebook_run`), checked for a metric computed from the model's real outputs and for training having
changed what it should."""

from __future__ import annotations

import json
import re

import pytest
from safetensors.torch import load_file

from helpers import NOTEBOOK_CI, ROOT, invoke, run_cli

pytestmark = pytest.mark.e2e  # trains or converts the embedded model: minutes on CPU

HELD_OUT = NOTEBOOK_CI["classification"].eval_rows  # classification: every held-out row is scored

def finished(notebook_run, recipe: str) -> tuple:
    run_dir = notebook_run(recipe).path
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    return run_dir, json.loads((run_dir / "eval.json").read_text())


def test_instruct_sft_json_metric_comes_from_the_answers(notebook_run):
    run_dir, summary = finished(notebook_run, "instruct_sft")
    assert summary["after"]["eval_loss"] < summary["before"]["eval_loss"]
    # samples.md lists the same 6 answers the metric scored: recompute json_valid from them
    for phase in ("before", "after"):
        answers = re.findall(rf"\*\*{phase}:\*\* (.*)", (run_dir / "samples.md").read_text())
        assert len(answers) == 6 and summary[phase]["rows"] == 6
        parsed = []
        for a in answers:
            try:
                parsed.append(isinstance(json.loads(a), dict))
            except json.JSONDecodeError:
                parsed.append(False)
        assert summary[phase]["json_valid"] == round(sum(parsed) / 6, 4)
        assert set(summary[phase]["field_match"]) == {"name", "age", "city", "job"}


def test_continued_pretraining_lowers_perplexity_and_trains_embeddings(notebook_run):
    run_dir, summary = finished(notebook_run, "continued_pretraining")
    assert summary["after"]["perplexity"] < summary["before"]["perplexity"]
    assert summary["after"]["perplexity"] == pytest.approx(2.718281828 ** summary["after"]["eval_loss"], rel=1e-3)
    assert summary["data"]["train"]["truncated"] == 0  # packing cut documents into rows, it dropped nothing
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    [embedding] = [v for k, v in weights.items() if "embed_tokens" in k]
    from transformers import AutoModelForCausalLM

    from fasttune import models

    base = AutoModelForCausalLM.from_pretrained(models.resolve(models.EMBEDDED))
    original = base.get_input_embeddings().weight.detach()
    assert embedding.shape == original.shape
    assert (embedding.float() - original).abs().max() > 0  # the full embedding matrix was trained


@pytest.fixture(scope="module")
def classification_run(notebook_run):
    return finished(notebook_run, "classification")


def test_classification_metrics_and_confusion_matrix(classification_run):
    run_dir, summary = classification_run
    after = summary["after"]
    labels = json.loads((run_dir / "config.json").read_text())["task"]["labels"]
    assert len(labels) == 6
    matrix = after["confusion"]["rows_true_cols_predicted"]
    assert sum(map(sum, matrix)) == after["rows"] == HELD_OUT  # every prediction is one of the labels
    assert after["accuracy"] == round(sum(matrix[i][i] for i in range(6)) / HELD_OUT, 4)
    assert summary["after"]["eval_loss"] < summary["before"]["eval_loss"]
    assert (run_dir / "confusion.png").stat().st_size > 10_000


def test_predict_answers_only_valid_labels_and_agrees_with_the_run(classification_run, tmp_path):
    run_dir, summary = classification_run
    labels = json.loads((run_dir / "config.json").read_text())["task"]["labels"]
    result = invoke("predict", str(run_dir), "--text", "wake me up at six tomorrow", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    [answer] = [json.loads(line) for line in result.stdout.splitlines()]
    assert answer["label"] in labels and set(answer["probabilities"]) == set(labels)
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    # the held-out rows (the eval file's first HELD_OUT), scored by predict, give the accuracy the run recorded
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join((ROOT / "recipes/data/intent_eval.jsonl").read_text().splitlines()[:HELD_OUT]) + "\n")
    result = invoke("predict", str(run_dir), "--file", str(first))
    assert result.returncode == 0, result.stderr[-2000:]
    accuracy = float(re.search(r"accuracy ([0-9.]+)", result.stdout).group(1))
    assert accuracy == pytest.approx(summary["after"]["accuracy"], abs=1 / HELD_OUT + 1e-6)


def test_predict_refuses_a_label_outside_the_set(classification_run, tmp_path):
    run_dir, _ = classification_run
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "play jazz", "label": "play_music"}\n{"text": "hi", "label": "greeting"}\n')
    result = invoke("predict", str(run_dir), "--file", str(bad))
    assert result.returncode == 2
    assert f"{bad}:2: label: label 'greeting' is not one of the valid labels" in result.stderr


def lora_b_trained(run_dir) -> bool:
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    return all(v.abs().max() > 0 for k, v in weights.items() if "lora_B" in k)


def test_grpo_rewards_come_from_real_generations_and_weights_change(notebook_run):
    run_dir, summary = finished(notebook_run, "grpo_math")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "rewards/answer_match/mean" in r]
    assert len(steps) == 2 and all(r["completions/mean_length"] > 0 for r in steps)
    # a group whose rewards all tie has no advantage and moves nothing; the CI run makes them differ
    assert any(r["reward_std"] > 0 for r in steps), steps
    assert lora_b_trained(run_dir)
    # fasttune's own count: 2 steps x 4 completions of at most 64 tokens carry the loss, prompts are seen too
    assert 0 < summary["trained_tokens"] <= 2 * 4 * 64 < summary["train_tokens"]
    assert all(r["tokens_per_second"] > 0 for r in records if "loss" in r)
    for phase in ("before", "after"):
        m = summary[phase]
        assert m["rows"] == 4 and set(m["rewards"]) == {"answer_match", "think_format", "length_penalty"}
        # answer_match recomputed from the answers samples.md shows for the same 4 prompts
        answers = re.findall(rf"\*\*{phase}:\*\* (.*)", (run_dir / "samples.md").read_text())
        refs = re.findall(r"\*\*reference:\*\* (.*)", (run_dir / "samples.md").read_text())
        from fasttune.rewards import answer_match

        expected = answer_match("answer")(None, answers, answer=[json.loads(r)["answer"] for r in refs])
        assert m["rewards"]["answer_match"] == round(sum(expected) / 4, 4)


def test_grpo_stops_on_a_broken_reward_and_names_it(tmp_path):
    recipe = tmp_path / "broken.py"
    recipe.write_text(
        "from fasttune import Data, Eval, Log, Recipe, Train, tasks\n\n"
        "def stubborn(prompts, completions, **columns):\n    return [0.0]\n\n"
        "recipe = Recipe(task=tasks.GRPO(rewards=[stubborn]),\n"
        f"    data=Data({str(ROOT / 'recipes/data/math_train.jsonl')!r}, eval=0.1),\n"
        "    train=Train(max_steps=1), eval=Eval(metric_rows=2, samples=0, max_new_tokens=8),\n"
        f"    log=Log(report_to=[], runs_dir={str(tmp_path / 'runs')!r}))\n")
    result = run_cli("run", str(recipe))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "reward function 'stubborn' returned 1 values for 2 completions" in result.stderr
    [run_dir] = list((tmp_path / "runs").iterdir())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"


def test_function_calling_metric_comes_from_the_answers(notebook_run):
    run_dir, summary = finished(notebook_run, "function_calling")
    assert lora_b_trained(run_dir)
    assert summary["after"]["eval_loss"] < summary["before"]["eval_loss"]
    from fasttune.tasks.function_calling import parse_call

    text = (run_dir / "samples.md").read_text()
    refs = re.findall(r"\*\*reference:\*\* (.*)", text)
    for phase in ("before", "after"):
        answers = re.findall(rf"\*\*{phase}:\*\* (.*)", text)
        calls = [parse_call(a) for a, r in zip(answers, refs) if r != "(no tool call)"]
        assert summary[phase]["rows"]["with_call"] == len(calls)
        assert summary[phase]["valid_call"] == round(sum(c is not None for c in calls) / len(calls), 4)
    tokenizer_template = (run_dir / "adapter" / "chat_template.jinja").read_text()
    assert "<tool_call>" in tokenizer_template  # the tool template travels with the adapter
