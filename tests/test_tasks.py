"""Instruction SFT, continued pre-training and classification: formatting, masks and metrics on
the real SmolLM2 tokenizer; label scoring against the model's own loss."""

from __future__ import annotations

import math

import pytest
import torch

from fasttune.chat_template import IGNORE
from fasttune.data.load import Row
from fasttune.tasks import Classification, ContinuedPretraining, InstructSFT

ROW = {"prompt": "Extract the city as JSON.\n\nAna lives in Porto.", "completion": '{"city": "Porto"}'}


def trained(tokenizer, example) -> str:
    return tokenizer.decode([t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE])


def test_instruct_chat_trains_on_the_completion_only(tokenizer):
    example = InstructSFT().tokenize(ROW, tokenizer, 512)
    assert trained(tokenizer, example) == '{"city": "Porto"}<|im_end|>\n'
    assert "Ana lives in Porto." in tokenizer.decode(example["input_ids"])


def test_instruct_raw_is_prompt_then_completion_then_eos(tokenizer):
    example = InstructSFT(template="raw").tokenize(ROW, tokenizer, 512)
    assert tokenizer.decode(example["input_ids"]) == ROW["prompt"] + ROW["completion"] + tokenizer.eos_token
    assert trained(tokenizer, example) == ROW["completion"] + tokenizer.eos_token
    prompt, reference = InstructSFT(template="raw").prompt(ROW)
    assert prompt == ROW["prompt"] and reference == ROW["completion"]


def test_json_metric_counts_parses_and_fields():
    refs = ['{"name": "Ana", "age": 30}', '{"name": "Bo", "age": 41}', '{"name": "Cy", "age": 5}', '{"name": "Di", "age": 7}']
    preds = ['{"name": "Ana", "age": 30}', '{"name": "Bo", "age": 40}', 'name: Cy', '["Di"]']
    m = InstructSFT(metric="json").metrics(preds, refs, 0.5)
    assert m["json_valid"] == 0.5 and m["exact_match"] == 0.25
    assert m["field_match"] == {"age": 0.25, "name": 0.5}


def test_pretraining_packs_documents_into_full_rows_with_eos(tokenizer):
    docs = [f"Document {i}: " + "words " * (10 + 7 * i) for i in range(6)]
    rows = [Row(f"f:{i}", {"text": d}) for i, d in enumerate(docs)]
    dataset, _, stats = ContinuedPretraining().datasets(rows, [], tokenizer, 32)
    stats = stats["train"]
    lengths = [len(ids) for ids in dataset["input_ids"]]
    assert all(n == 32 for n in lengths[:-1]) and 0 < lengths[-1] <= 32
    flat = [t for ids in dataset["input_ids"] for t in ids]
    assert len(flat) == stats.tokens  # nothing cut, nothing padded
    assert flat.count(tokenizer.eos_token_id) == len(docs)
    assert dataset["labels"] == dataset["input_ids"]  # every token trained
    assert tokenizer.decode(flat).split(tokenizer.eos_token)[:-1] == docs


def test_perplexity_is_exp_of_eval_loss():
    assert ContinuedPretraining().metrics([], [], 2.0) == {"perplexity": round(math.exp(2.0), 3)}


def rows(pairs, name="train.jsonl"):
    return [Row(f"{name}:{i + 1}", {"text": t, "label": label}) for i, (t, label) in enumerate(pairs)]


def test_classification_labels_come_from_training_data_and_imbalance_is_flagged():
    task = Classification()
    notes = task.check_dataset(rows([("a", "x")] * 9 + [("b", "y")] * 2), rows([("c", "y")], "eval.jsonl"))
    assert task.labels == ["x", "y"]
    assert any("imbalanced" in n for n in notes)
    assert "Text: hello" in task.messages("hello")[0]["content"] and "x, y" in task.messages("hello")[0]["content"]


def test_classification_metrics():
    task = Classification(labels=["a", "b", "c"])
    task.train_counts = {"a": 5, "b": 3, "c": 2}
    m = task.metrics(["a", "a", "b", "c"], ["a", "b", "b", "c"], None)
    assert m["accuracy"] == 0.75 and m["majority_baseline"] == 0.25
    assert m["f1"] == {"a": round(2 / 3, 4), "b": round(2 / 3, 4), "c": 1.0}
    assert m["macro_f1"] == round((2 / 3 + 2 / 3 + 1) / 3, 4)
    assert m["confusion"]["rows_true_cols_predicted"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return LlamaForCausalLM(config).eval()


def test_label_scores_are_the_models_own_sequence_likelihood(tokenizer, tiny_model):
    from fasttune.label_scoring import label_probabilities

    task = Classification(labels=["play_music", "timer", "weather"])
    prompts = [task.messages("play some jazz"), task.messages("is it raining in Oslo")]
    probs = label_probabilities(tiny_model, tokenizer, prompts, task.labels)
    for prompt, row in zip(prompts, probs):
        assert sum(row) == pytest.approx(1.0, abs=1e-5)
        # the same quantity from transformers' own loss: -(mean token loss x token count) per label
        scores = []
        for label in task.labels:
            example = task.tokenize({"text": prompt[0]["content"].split("Text: ")[1], "label": label}, tokenizer, 512)
            labels = torch.tensor([example["labels"]])
            with torch.no_grad():
                loss = tiny_model(input_ids=torch.tensor([example["input_ids"]]), labels=labels).loss
            scores.append(-loss.item() * int((labels[0, 1:] != IGNORE).sum()))
        expected = torch.softmax(torch.tensor(scores), 0).tolist()
        assert row == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("task", [InstructSFT(), ContinuedPretraining()], ids=lambda t: t.name)
def test_datasets_tokenize_each_row_once_and_carry_the_figures_check_prints(task, tokenizer, monkeypatch):
    """`fasttune run` prints `fasttune check`'s summary lines: they come from the pass that builds the
    datasets (PrepStats.figures), not from tokenizing every row a second time; the dataset is Arrow int32."""
    from fasttune.check import figures

    rows = [Row(f"d.jsonl:{i}", {**ROW, "text": ROW["prompt"] * (i + 1)}) for i in range(6)]
    expected = {split: figures(task, part, tokenizer, 24) for split, part in (("train", rows[:4]), ("eval", rows[4:]))}
    calls = []
    tokenize = type(task).tokenize
    monkeypatch.setattr(type(task), "tokenize", lambda self, *args: calls.append(1) or tokenize(self, *args))
    train_ds, eval_ds, stats = task.datasets(rows[:4], rows[4:], tokenizer, 24)
    assert len(calls) == len(rows)
    assert {split: stats[split].figures.report(24) for split in stats} == expected
    assert set(stats["train"].to_dict()) == {"rows", "truncated", "dropped", "tokens", "trained_tokens"}  # eval.json
    assert train_ds.features["input_ids"].feature.dtype == "int32"
