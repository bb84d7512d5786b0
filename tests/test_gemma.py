"""Gemma 3 270M, the second shipped model: a base model with a 262,144-token vocabulary, one KV head and
no chat template. The tasks whose rendering or scoring depends on the model's template and vocabulary
train a few steps on it and report their metric, in Gemma's own turns: chat SFT (Gemma's turns chosen
for a model without a template), classification (labels scored as Gemma's tokens), function calling
(fasttune's tool turns written in Gemma's turns) and DPO (TRL tokenizing pairs through Gemma's template).
The four runs share one fresh process (`fasttune.train` once per task: the libraries import once), on
the recipes' own training files and the first rows of their held-out files. Instruction SFT and
continued pre-training on Gemma are left to benchmarks (the suite's time: each run here costs about 12
s); the export side (GGUF, template conformance, stopping) is tests/test_gguf.py's and
benchmarks/model_exports.py's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, first_rows

pytestmark = pytest.mark.e2e  # trains the shipped Gemma four times: about a minute on CPU

RUNS = {  # task -> (held-out rows, overrides): two steps each; generation only where the metric needs it
    "chat_sft": (4, ("eval.samples=0",)),
    "classification": (4, ("eval.samples=0",)),
    "function_calling": (2, ("eval.metric_rows=2", "eval.samples=0", "eval.max_new_tokens=12")),
    "dpo": (4, ("eval.samples=0",)),
}
SHARED = ("model.name=gemma3-270m", "train.max_steps=2", "train.batch_size=2", "eval.drift=false", "log.report_to=[]", "export.formats=[]")

SCRIPT = """
import json, sys
import fasttune

for name, overrides in json.loads(sys.argv[1]).items():
    print(name, fasttune.train(f"recipes/{name}.py", *overrides).path, flush=True)
"""


@pytest.fixture(scope="module")
def gemma_runs(tmp_path_factory) -> dict:
    """task -> (run folder, eval.json, config.json), all four trained in one fresh process."""
    from fasttune.recipe import load_recipe

    runs = tmp_path_factory.mktemp("gemma")
    plan = {}
    for name, (rows, overrides) in RUNS.items():
        held_out = first_rows(load_recipe(ROOT / "recipes" / f"{name}.py").data.eval, rows, runs / f"{name}-eval.jsonl")
        plan[name] = [*SHARED, *overrides, f"data.eval={held_out}", f"log.runs_dir={runs / name}"]
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(plan)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = {}
    for line in done.stdout.splitlines():
        name, _, path = line.partition(" ")
        if name in RUNS:
            folder = Path(path)
            found[name] = (folder, json.loads((folder / "eval.json").read_text()),
                           json.loads((folder / "config.json").read_text()))
    assert found.keys() == RUNS.keys(), done.stdout[-3000:]
    return found


@pytest.mark.parametrize("task", list(RUNS))
def test_every_task_trains_gemma_in_its_own_turns(gemma_runs, task):
    folder, summary, config = gemma_runs[task]
    assert json.loads((folder / "status.json").read_text())["status"] == "finished"
    assert config["model"]["name"] == "gemma3-270m" and summary["steps"] == 2
    assert summary["after"]["eval_loss"] < summary["before"]["eval_loss"]
    # the template chosen is Gemma's (its markers are tokens of the vocabulary), never ChatML's
    assert config["model"]["chat_template"] == "gemma"
    rendered = [p["text"] for p in json.loads((folder / "eval_prompts.json").read_text())]
    assert rendered and all(t.startswith("<bos><start_of_turn>user\n") and t.endswith("<start_of_turn>model\n")
                            and "<|im_start|>" not in t for t in rendered)


def test_each_task_reports_its_metric_on_gemma(gemma_runs):
    rows = {name: held for name, (held, _) in RUNS.items()}
    for phase in ("before", "after"):
        classes = gemma_runs["classification"][1][phase]
        matrix = classes["confusion"]["rows_true_cols_predicted"]
        assert sum(map(sum, matrix)) == classes["rows"] == rows["classification"]  # every answer is a label
        assert classes["accuracy"] == round(sum(matrix[i][i] for i in range(len(matrix))) / classes["rows"], 4)
        calls = gemma_runs["function_calling"][1][phase]
        assert calls["rows"]["with_call"] + calls["rows"]["without_call"] == rows["function_calling"]
        assert 0 <= calls["valid_call"] <= 1
        pairs = gemma_runs["dpo"][1][phase]
        assert pairs["rows"] == rows["dpo"] and 0 <= pairs["preference_accuracy"] <= 1
    # DPO's metric moves with training: the chosen reply's share of the pair rose on the held-out pairs
    assert gemma_runs["dpo"][1]["after"]["mean_p_chosen"] > gemma_runs["dpo"][1]["before"]["mean_p_chosen"]


def test_function_calls_are_prompted_with_the_tools_in_gemmas_first_turn(gemma_runs):
    """The tool signatures head the first user turn (Gemma has no system role) and the saved template is
    fasttune's Gemma tool turns, so chat and export render calls as training did."""
    from fasttune.chat_template import TOOLS_GEMMA

    folder, _, _ = gemma_runs["function_calling"]
    [first, *_] = [p["text"] for p in json.loads((folder / "eval_prompts.json").read_text())]
    assert first.startswith("<bos><start_of_turn>user\n") and "<tools>\n{" in first.split("<end_of_turn>")[0]
    assert (folder / "adapter" / "chat_template.jinja").read_text() == TOOLS_GEMMA
