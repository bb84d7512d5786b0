"""colab/: every recipe has a notebook, the notebooks are what colab/make_notebooks.py makes (so they
cannot drift from the recipes), none stores outputs, and each one runs top to bottom on CPU against
the embedded model, with its Colab install cell skipped and a few training steps (tests/helpers.py's
NOTEBOOK_CI: the settings the task's own tests read from the same run; the cells tagged `export`
run where a test reads the export; chat_sft's writes q4_k_m, the others f16)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from helpers import DRIFT_PROMPTS, NOTEBOOK_CI, ROOT

RECIPES = sorted(p.stem for p in (ROOT / "recipes").glob("*.py"))


def test_every_recipe_has_a_notebook_as_the_generator_makes_it():
    assert sorted(p.stem for p in (ROOT / "colab").glob("*.ipynb")) == RECIPES
    check = subprocess.run([sys.executable, "colab/make_notebooks.py", "--check"], cwd=ROOT,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr + check.stdout


def test_generator_check_notices_a_hand_edit_and_a_missing_notebook(tmp_path):
    sys.path.insert(0, str(ROOT / "colab"))
    import make_notebooks

    for path in (ROOT / "colab").glob("*.ipynb"):
        shutil.copy(path, tmp_path)
    assert make_notebooks.stale(tmp_path) == []
    edited = tmp_path / "chat_sft.ipynb"
    edited.write_text(edited.read_text().replace("MAX_STEPS = 60", "MAX_STEPS = 61"))
    (tmp_path / "dpo.ipynb").unlink()
    assert make_notebooks.stale(tmp_path) == ["chat_sft.ipynb", "dpo.ipynb"]
    assert make_notebooks.stale(tmp_path, write=True) == ["chat_sft.ipynb", "dpo.ipynb"]
    assert make_notebooks.stale(tmp_path) == []  # rewritten as the recipes make them


@pytest.mark.parametrize("name", RECIPES)
def test_notebook_stores_no_outputs_and_tags_its_cells(name):
    nb = nbformat.read(ROOT / "colab" / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    tags = [t for c in code for t in c.metadata.get("tags", [])]
    assert tags == ["colab-install", "parameters", "export"] + (["export"] if name != "classification" else [])
    assert "fasttune.train(recipe)" in "".join(c.source for c in code)


@pytest.mark.e2e
@pytest.mark.parametrize("name", RECIPES)
def test_notebook_runs_on_cpu(name, notebook_run):
    run = notebook_run(name)  # executed top to bottom once per test run (tests/conftest.py)
    outputs = run.outputs
    assert json.loads((run.path / "status.json").read_text())["status"] == "finished"
    summary = json.loads((run.path / "eval.json").read_text())
    assert summary["steps"] == NOTEBOOK_CI[name].steps
    drift = summary["drift"]  # the run compared with its base on general prompts, where CI asks for it
    if NOTEBOOK_CI[name].drift:
        assert drift["prompts"] == DRIFT_PROMPTS and 0 <= drift["answers_changed"] <= DRIFT_PROMPTS
        assert 0 <= drift["kl_mean"] <= drift["kl_p95"] * DRIFT_PROMPTS  # the mean of 4 is at most 4 times its p95
        assert "General answers changed on" in outputs  # its figures are coloured by Rich in a notebook
    else:
        assert drift is None and "General answers changed" not in outputs  # eval.drift=false
    if not NOTEBOOK_CI[name].export:
        assert not (run.path / "export").exists()  # its export cells were skipped
    else:
        check_export(name, run)
    assert "image/png" in outputs  # the loss curve was shown
    assert "offline:" in outputs  # where W&B logged the run
    assert "imported before unsloth" not in outputs  # check() must not spoil Unsloth's patches


def check_export(name, run):
    report = json.loads((run.path / "export" / "export.json").read_text())
    formats = {item["format"] for item in report["exports"]}
    if name == "classification":
        assert formats == {"merged"}
        assert "probability" in run.outputs  # run.predict's table
    else:
        assert formats == {"gguf", "merged"}
        gguf = next(item for item in report["exports"] if item["format"] == "gguf")
        assert gguf["quant"] == NOTEBOOK_CI[name].quant and gguf["verification"]["total_tokens"] > 0
        answer = next(line for line in run.outputs.splitlines() if line.startswith("-> "))
        assert answer.removeprefix("-> ").strip(), "the exported model's answer is empty"
