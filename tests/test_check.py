"""`fasttune check`: the report's figures recomputed here from the data and the real tokenizer."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from helpers import ROOT, invoke


def check_json(*args: str) -> dict:
    result = invoke("check", *args, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_lengths_cuts_and_example_match_the_tokenized_data(tokenizer):
    report = check_json("recipes/chat_sft.py", "data.max_seq_length=64")
    rows = [json.loads(line) for line in (ROOT / "recipes/data/chat_train.jsonl").read_text().splitlines()]
    lengths = sorted(len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
                     for r in rows)
    train = report["splits"]["train"]
    assert train["rows"] == len(rows) and train["tokens"] == sum(lengths)
    assert train["length"]["max"] == lengths[-1] and train["length"]["p50"] == lengths[(len(lengths) + 1) // 2 - 1]
    assert train["rows_cut"] == sum(n > 64 for n in lengths) > 0
    assert train["tokens_cut"] == sum(n - 64 for n in lengths if n > 64)
    assert sum(b["rows"] for b in train["histogram"]) == len(rows)
    assert 0 < train["trained_share"] < 1
    example = report["examples"]["train"]
    assert example["where"] == "recipes/data/chat_train.jsonl:1"
    assert f"[[{rows[0]['messages'][-1]['content']}<|im_end|>" in example["text"]


def test_task_figures_come_from_the_data():
    report = check_json("recipes/classification.py")
    rows = [json.loads(line) for line in (ROOT / "recipes/data/intent_eval.jsonl").read_text().splitlines()]
    assert report["figures"]["class_counts"]["eval"] == dict(sorted(Counter(r["label"] for r in rows).items()))
    grpo = check_json("recipes/grpo_math.py")["figures"]
    assert grpo["reward_columns"] == ["answer"] and grpo["reward_functions"][0] == "answer_match"


def test_bad_data_is_named_before_any_model_loads(tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
                    '{"messages": [{"role": "pirate", "content": "Arr"}]}\n')
    result = invoke("check", "recipes/chat_sft.py", f"data.path={data}", "data.eval=0")
    assert result.returncode == 2
    assert f"{data}:2: messages[0].role: unknown role 'pirate'" in result.stderr
    assert "Loading" not in result.stdout + result.stderr


def test_recipe_data_paths_work_from_another_directory(tmp_path):
    """The shipped recipes name their data from the repository root; run from elsewhere, the path is
    found from the recipe's own folder, and the report says which file was read."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "fasttune.cli", "check", str(ROOT / "recipes/chat_sft.py"), "--json"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["data"]["train"] == str(ROOT / "recipes/data/chat_train.jsonl")
    assert report["splits"]["train"]["rows"] == len((ROOT / "recipes/data/chat_train.jsonl").read_text().splitlines())


def test_a_runs_folder_that_cannot_be_written_is_refused_before_any_model_loads(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke("run", "recipes/chat_sft.py", f"log.runs_dir={blocker}/runs")
    assert result.returncode == 2 and f"log.runs_dir: cannot write run folders in {blocker}/runs" in result.stderr
    assert "Backend:" not in result.stdout


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.py")), ids=lambda p: p.stem)
def test_check_runs_on_every_shipped_recipe(recipe):
    from click.testing import CliRunner

    from fasttune.cli import main
    from fasttune.recipe import load_recipe

    result = CliRunner().invoke(main, ["check", str(recipe), "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    report = json.loads(result.output)
    data = load_recipe(recipe).data
    for split, path in (("train", data.path), ("eval", data.eval)):
        fig = report["splits"][split]
        assert fig["rows"] == len(Path(path).read_text().splitlines())  # every shipped recipe has an eval file
        assert sum(b["rows"] for b in fig["histogram"]) == fig["rows"] and fig["length"]["max"] > 0
        assert "[[" in report["examples"][split]["text"]  # the trained part is marked


def test_a_task_rule_on_the_train_section_stops_check_and_run_before_any_model_loads(tmp_path):
    """GRPO fills whole batches with each prompt's group: the rule is the task's (Task.check_train),
    checked with the recipe, not when its trainer is built after the model has loaded."""
    for command in ("check", "run"):
        done = invoke(command, "recipes/grpo_math.py", "train.batch_size=2", f"log.runs_dir={tmp_path}")
        assert done.returncode == 2 and "multiple of task.num_generations (4)" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())  # no run folder
