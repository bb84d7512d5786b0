"""Shared fixtures: the real SmolLM2 tokenizer, a recipe file writer, and the trained runs (and their
export) that several test modules read, each trained once per test run however many pytest-xdist workers
ask (`once`); the workers' share of the cores. Helpers that tests import live in tests/helpers.py (a
conftest is for pytest to load, not for tests to import)."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share the cores: OpenMP threads that wait sleep instead of spinning, or each worker's
    # torch spins on the core the other computes on, ten times slower (benchmarks/README.md, Tests and
    # install). Set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from helpers import (
    CHAT_RUN,
    ROOT,
    SHIPPED_RUNS,
    WANDB_UNREACHABLE,
    NotebookRun,
    TrainedRun,
    execute_notebook,
    first_rows,
    invoke,
    notebook_kernel,
    train_in_one_process,
    train_run,
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject.toml's addopts): two workers at most, the count measured (benchmarks/README.md)."""
    return min(2, os.cpu_count() or 1)


def pytest_collection_modifyitems(config, items) -> None:
    """The modules that train or convert (marked e2e) first: pytest-xdist hands out whole modules in this
    order, so the long ones start early and the short ones fill in beside them."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


def once(tmp_path_factory, name: str, make, dump, load):
    """make() once per test run. Under `pytest -n` each worker has session fixtures of its own: the first
    worker to ask makes it while the others wait on a lock, then it is read from the JSON `dump` gave."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return make()
    from filelock import FileLock

    record = tmp_path_factory.getbasetemp().parent / f"{name}.json"  # the run's folder, above each worker's
    with FileLock(f"{record}.lock"):
        if record.is_file():
            return load(json.loads(record.read_text()))
        made = make()
        record.write_text(json.dumps(dump(made)))
        return made


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded model's own tokenizer (converted once into the user cache)."""
    from transformers import AutoTokenizer

    from fasttune import models

    return AutoTokenizer.from_pretrained(models.resolve(models.EMBEDDED))


@pytest.fixture(scope="session")
def gemma_tokenizer():
    """Gemma 3 270M's own tokenizer, from the shipped model (converted once into the user cache), no template."""
    from transformers import AutoTokenizer

    from fasttune import models

    return AutoTokenizer.from_pretrained(models.resolve("gemma3-270m"))


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe for `task` over `data` (a path) into tmp_path and return its path."""

    def write(data: str, task: str = "tasks.ChatSFT()", name: str = "recipe.py") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(f"""\
            from fasttune import Data, Log, Recipe, Train, tasks

            recipe = Recipe(
                task={task},
                data=Data({data!r}, eval=0.25),
                train=Train(max_steps=2),
                log=Log(runs_dir={str(tmp_path / 'runs')!r}, report_to=[]),
            )
            """))
        return path

    return write


# --- Trained runs that many tests read: each is trained once per test run (`once`), in a fresh process.
def run_record(run: TrainedRun) -> list:
    return [str(run.path), run.output, list(run.args)]


def trained_run(record: list) -> TrainedRun:
    return TrainedRun(Path(record[0]), record[1], tuple(record[2]))


@pytest.fixture(scope="session")
def chat_run_hf(tmp_path_factory) -> TrainedRun:
    """CHAT_RUN on the transformers + peft backend (tests/test_e2e.py, test_export.py, test_interrupts.py)."""
    return once(tmp_path_factory, "chat_run_hf", lambda: train_run(
        tmp_path_factory.mktemp("chat-hf"), *CHAT_RUN, "model.backend=hf", env=WANDB_UNREACHABLE), run_record, trained_run)


@pytest.fixture(scope="session")
def chat_run_unsloth(tmp_path_factory) -> TrainedRun:
    """CHAT_RUN on the Unsloth backend (its CPU fallback here)."""
    return once(tmp_path_factory, "chat_run_unsloth", lambda: train_run(
        tmp_path_factory.mktemp("chat-unsloth"), *CHAT_RUN, "model.backend=unsloth",
        "eval.drift=false", env=WANDB_UNREACHABLE), run_record, trained_run)  # the drift tests read chat_run_hf


@pytest.fixture(scope="session")
def chat_export(tmp_path_factory, chat_run_hf) -> tuple[Path, dict]:
    """chat_run_hf exported once to adapter, merged and GGUF f16, q8_0 and q4_k_m, each GGUF verified on 2
    held-out prompts: (the export folder, export.json) (tests/test_export.py, test_gguf.py)."""
    def export() -> tuple[Path, dict]:
        result = invoke("export", str(chat_run_hf.path), "--to", "adapter", "--to", "merged", "--to", "gguf",
                        "--quant", "f16,q8_0,q4_k_m", "--verify-prompts", "2")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return chat_run_hf.path / "export", json.loads((chat_run_hf.path / "export" / "export.json").read_text())

    return once(tmp_path_factory, "chat_export", export, lambda made: [str(made[0]), made[1]],
                lambda record: (Path(record[0]), record[1]))


@pytest.fixture(scope="session")
def shipped_runs(tmp_path_factory) -> dict:
    """name -> (run folder, eval.json, config.json) for each of helpers.SHIPPED_RUNS, all trained in one fresh
    process (tests/test_gemma.py, test_stopping.py)."""
    def train() -> dict:
        from fasttune.recipe import load_recipe

        runs = tmp_path_factory.mktemp("shipped")
        plan = {}
        for name, (recipe, rows, overrides) in SHIPPED_RUNS.items():
            path, folder = f"recipes/{recipe}.py", runs / name.replace("/", "-")
            held_out = first_rows(load_recipe(ROOT / path).data.eval, rows, folder.with_suffix(".eval.jsonl"))
            plan[name] = (path, [*overrides, f"data.eval={held_out}", "eval.drift=false", "log.report_to=[]",
                                 f"log.runs_dir={folder}"])
        return {name: (folder, json.loads((folder / "eval.json").read_text()),
                       json.loads((folder / "config.json").read_text()))
                for name, folder in train_in_one_process(plan).items()}

    return once(tmp_path_factory, "shipped_runs", train, lambda made: {k: [str(v[0]), *v[1:]] for k, v in made.items()},
                lambda record: {k: (Path(v[0]), *v[1:]) for k, v in record.items()})


@pytest.fixture(scope="session")
def notebook_run(tmp_path_factory):
    """notebook_run(recipe) -> NotebookRun: colab/<recipe>.ipynb executed once per test run (helpers.NOTEBOOK_CI
    says how). Its run is the task's end-to-end run too: tests/test_e2e_tasks.py, test_dpo.py,
    test_e2e_thinking.py and test_api.py read it instead of training again. A worker's notebooks run in one
    kernel, started with its first."""
    kernel = []

    def execute(name: str) -> NotebookRun:
        kernel[:] = kernel or [notebook_kernel()]
        return execute_notebook(name, tmp_path_factory.mktemp(f"notebook-{name}"), kernel[0])

    done: dict[str, NotebookRun] = {}

    def run(name: str) -> NotebookRun:
        if name not in done:
            done[name] = once(tmp_path_factory, f"notebook-{name}", lambda: execute(name),
                              lambda made: [str(made.path), made.outputs],
                              lambda record: NotebookRun(Path(record[0]), record[1]))
        return done[name]

    yield run
    if kernel:
        kernel[0].shutdown_kernel(now=True)
