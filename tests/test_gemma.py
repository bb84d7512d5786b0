"""Gemma 3 270M, the second shipped model: a base model with a 262,144-token vocabulary, one KV head and
no chat template. Five tasks train a few steps on it and report their metric: instruction SFT (its JSON
metric read from Gemma's answers), classification (labels scored as Gemma's tokens), function calling
(fasttune's tool turns written in Gemma's turns), DPO (TRL tokenizing pairs through Gemma's template) and
continued pre-training (raw text, with Gemma's tied 262k-row embeddings trained in full). They train in one
fresh process with the chat runs tests/test_stopping.py exports (tests/conftest.py's `shipped_runs`,
helpers.SHIPPED_RUNS). Template conformance on a tiny Gemma is tests/test_gguf.py's."""

from __future__ import annotations

import json
import math

import pytest

from helpers import SHIPPED_RUNS

pytestmark = pytest.mark.e2e  # trains the shipped Gemma five times: over a minute on CPU

RUNS = [name for name in SHIPPED_RUNS if not name.startswith("stopping/")]  # five tasks, two steps each
TURNS = {name for name in RUNS if name != "continued_pretraining"}  # raw text has no turns


@pytest.mark.parametrize("task", RUNS)
def test_every_task_trains_gemma_in_its_own_turns(shipped_runs, task):
    folder, summary, config = shipped_runs[task]
    assert json.loads((folder / "status.json").read_text())["status"] == "finished"
    assert config["model"]["name"] == "gemma3-270m" and summary["steps"] == 2
    assert summary["after"]["eval_loss"] < summary["before"]["eval_loss"]
    # the template chosen is Gemma's (its markers are tokens of the vocabulary), never ChatML's
    assert config["model"]["chat_template"] == "gemma"
    rendered = [p["text"] for p in json.loads((folder / "eval_prompts.json").read_text())]
    assert rendered and not any("<|im_start|>" in t for t in rendered)
    if task in TURNS:
        assert all(t.startswith("<bos><start_of_turn>user\n") and t.endswith("<start_of_turn>model\n") for t in rendered)
    else:  # a text's opening, as it is
        assert not any("<start_of_turn>" in t for t in rendered)


def test_each_task_reports_its_metric_on_gemma(shipped_runs):
    rows = {name: held for name, (_, held, _) in SHIPPED_RUNS.items()}
    for phase in ("before", "after"):
        classes = shipped_runs["classification"][1][phase]
        matrix = classes["confusion"]["rows_true_cols_predicted"]
        assert sum(map(sum, matrix)) == classes["rows"] == rows["classification"]  # every answer is a label
        assert classes["accuracy"] == round(sum(matrix[i][i] for i in range(len(matrix))) / classes["rows"], 4)
        calls = shipped_runs["function_calling"][1][phase]
        assert calls["rows"]["with_call"] + calls["rows"]["without_call"] == rows["function_calling"]
        assert 0 <= calls["valid_call"] <= 1
        pairs = shipped_runs["dpo"][1][phase]
        assert pairs["rows"] == rows["dpo"] and 0 <= pairs["preference_accuracy"] <= 1
        extracted = shipped_runs["instruct_sft"][1][phase]  # from Gemma's answers, parsed as JSON
        assert extracted["rows"] == rows["instruct_sft"] and 0 <= extracted["json_valid"] <= 1
        assert set(extracted["field_match"]) == {"name", "age", "city", "job"}
        text = shipped_runs["continued_pretraining"][1][phase]
        assert text["perplexity"] == pytest.approx(math.exp(text["eval_loss"]), rel=1e-3)
    # DPO's metric moves with training: the chosen reply's share of the pair rose on the held-out pairs
    assert shipped_runs["dpo"][1]["after"]["mean_p_chosen"] > shipped_runs["dpo"][1]["before"]["mean_p_chosen"]


def test_function_calls_are_prompted_with_the_tools_in_gemmas_first_turn(shipped_runs):
    """The tool signatures head the first user turn (Gemma has no system role) and the saved template is
    fasttune's Gemma tool turns, so chat and export render calls as training did."""
    from fasttune.chat_template import TOOLS_GEMMA

    folder, _, _ = shipped_runs["function_calling"]
    [first, *_] = [p["text"] for p in json.loads((folder / "eval_prompts.json").read_text())]
    assert first.startswith("<bos><start_of_turn>user\n") and "<tools>\n{" in first.split("<end_of_turn>")[0]
    assert (folder / "adapter" / "chat_template.jinja").read_text() == TOOLS_GEMMA


def test_continued_pretraining_trains_gemmas_tied_embeddings_as_one_matrix(shipped_runs):
    """Gemma ties lm_head to embed_tokens. Trained in full, the two stay one matrix (the adapter saves it
    under both names, equal), so the merge, which keeps the tie and writes embed_tokens, loses nothing."""
    import torch
    from safetensors import safe_open

    folder, _, _ = shipped_runs["continued_pretraining"]
    with safe_open(folder / "adapter" / "adapter_model.safetensors", "pt") as adapter:
        embedding = adapter.get_tensor("base_model.model.model.embed_tokens.weight")
        head = adapter.get_tensor("base_model.model.lm_head.weight")
    assert embedding.shape == (262144, 640) and torch.equal(embedding, head)
