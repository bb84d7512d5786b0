"""The contracts as code: no import cycles, tasks that declare everything, one export table, one
error base, config.json that rebuilds its recipe, overrides whose order does not matter."""

from __future__ import annotations

import ast
import dataclasses
import json

import pytest
from click.testing import CliRunner

from fasttune import tasks
from fasttune.errors import ConfigError, FasttuneError
from fasttune.recipe import Recipe, apply_overrides, load_recipe
from helpers import ROOT

PACKAGE = ROOT / "fasttune"
RECIPES = sorted((ROOT / "recipes").glob("*.py"))


def module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


ALL_MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}


def imports_of(path) -> set[str]:
    """Every fasttune module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from fasttune.export import gguf` imports the module fasttune.export.gguf; the package
            # itself counts only for names that are not modules (`from fasttune.errors import X`),
            # since a package's __init__ has always run before any of its modules is imported
            submodules = {f"{node.module}.{a.name}" for a in node.names} & ALL_MODULES
            found |= submodules
            if len(submodules) < len(node.names):
                found.add(node.module)
    return {m for m in found if m.startswith("fasttune")}


def test_no_import_cycle_in_the_package():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}
    done, stack = set(), []

    def visit(node):
        if node in stack:
            cycle = stack[stack.index(node):] + [node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)


def test_nothing_after_training_imports_training_code():
    readers = ["fasttune/export", "fasttune/chat.py", "fasttune/predict.py"]
    for path in [p for r in readers for p in ([ROOT / r] if r.endswith(".py") else (ROOT / r).rglob("*.py"))]:
        bad = {m for m in imports_of(path) if m in {"fasttune.run", "fasttune.recipe", "fasttune.evaluate",
                                                    "fasttune.session"} or m.split(".")[:2] == ["fasttune", "trainer"]}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}: it must read the run folder only"


HEAVY = {"torch", "transformers", "trl", "peft", "unsloth", "unsloth_zoo", "accelerate"}


def test_data_loading_imports_no_model_library():
    """fasttune/data/ reads and checks rows before any model loads: not even inside a function does it
    import torch or what imports torch (packing and batches live in fasttune/trainer/)."""
    for path in (PACKAGE / "data").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            heavy = {n for n in names if n.split(".")[0] in HEAVY}
            assert not heavy, f"{path.relative_to(ROOT)}:{node.lineno} imports {heavy}"


def test_training_steps_are_changed_only_by_the_trainer_class_and_its_tricks():
    """No code sets a trainer's step methods on an instance, and the step tricks keep no module state:
    what runs in a step is fasttune/trainer/build.py's class and the tricks in TRICKS."""
    from fasttune.trainer.tricks import TRICKS, StepTrick

    steps = {"training_step", "prediction_step", "compute_loss"}
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
            patched = [t.attr for t in targets if isinstance(t, ast.Attribute) and t.attr in steps]
            assert not patched, f"{path.relative_to(ROOT)}:{node.lineno} sets {patched} on an object"
            call = node.func if isinstance(node, ast.Call) else None
            if isinstance(call, ast.Name) and call.id == "setattr" and isinstance(node.args[1], ast.Constant):
                assert node.args[1].value not in steps, f"{path.relative_to(ROOT)}:{node.lineno} patches a step"
            in_trainer = path.parent == PACKAGE / "trainer"
            assert not (in_trainer and isinstance(node, ast.Global)), f"{path.relative_to(ROOT)}:{node.lineno}"
    members = {*StepTrick.__annotations__, *(k for k, v in vars(StepTrick).items() if callable(v) and k[0] != "_")}
    assert members == {"name", "applies", "context"} and TRICKS
    for trick in TRICKS:
        missing = {m for m in members if not hasattr(trick, m)}
        assert not missing, f"{type(trick).__name__} lacks {missing} of the StepTrick protocol"


def test_shared_code_never_names_a_task():
    """Behaviour that differs per task is asked of the task; shared modules do not branch on it."""
    names = set(tasks.TASKS)
    allowed = {"fasttune/predict.py"}  # `fasttune predict` is the classification command by design
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(ROOT))
        if rel.startswith("fasttune/tasks/") or rel in allowed:
            continue
        used = {n.id for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Name)} & names
        assert not used, f"{rel} names {used}"


def compared_strings(tree) -> list[tuple[int, str]]:
    """(line, text) of every string a comparison (or a `match` case) holds: an operand, or an item of
    a tuple, list or set operand (`task.name in ("dpo", "grpo")`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.MatchValue):
            operands = [node.value]
        else:
            continue
        for operand in operands:
            for item in operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else [operand]:
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    found.append((node.lineno, item.value))
    return found


# Comparisons with a task or backend name outside the package that owns it which must stay, as
# (file, name), each with its reason. None today: config.py checks the `model.backend` setting through
# its Literal type, not a comparison, and backends.choose, which reads the setting, is in fasttune/backends/.
NAME_COMPARISONS_ALLOWED: set[tuple[str, str]] = set()


def test_shared_code_never_compares_a_task_or_backend_name():
    """What differs between tasks is asked of the task, what differs between backends of the backend
    (the Backend protocol): only fasttune/tasks/ compares task names, only fasttune/backends/ backend names."""
    import importlib

    task_names = {cls.name for cls in tasks.TASKS.values()} | set(tasks.TASKS)  # short names and class names
    backends = [importlib.import_module(f"fasttune.backends.{p.stem}") for p in (PACKAGE / "backends").glob("*.py")]
    backend_names = {b.NAME for b in backends if hasattr(b, "NAME")}
    assert {"dpo", "DPO", "grpo"} <= task_names and backend_names == {"unsloth", "hf"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(ROOT))
        for line, text in compared_strings(ast.parse(path.read_text())):
            owner = ("fasttune/tasks/" if text in task_names else "fasttune/backends/" if text in backend_names
                     else None)
            if owner and not rel.startswith(owner) and (rel, text) not in NAME_COMPARISONS_ALLOWED:
                found.append(f"{rel}:{line} compares {text!r}")
    assert not found, "ask the task or the backend instead: " + "; ".join(found)


def test_every_task_implements_the_whole_contract():
    for name, cls in tasks.TASKS.items():
        assert issubclass(cls, tasks.Task), name
        assert not getattr(cls, "__abstractmethods__", None), f"{name} leaves {cls.__abstractmethods__} abstract"
        assert cls.name, f"{name} has no short name"

    class Incomplete(tasks.SFTTask):
        def check_row(self, row):
            return []

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # tokenize and prompt missing: refused when built, not an hour into a run


def test_one_table_of_export_formats():
    from fasttune.cli import main
    from fasttune.config import Export
    from fasttune.export.formats import FORMATS, QUANTS
    from fasttune.export.pipeline import WRITERS

    export_cmd = main.commands["export"]
    [to] = [p for p in export_cmd.params if p.name == "formats"]
    assert list(to.type.choices) == list(FORMATS) == list(WRITERS)
    help_text = CliRunner().invoke(main, ["export", "--help"]).output
    assert all(q in help_text for q in QUANTS)
    for fmt in FORMATS:
        Export(formats=[fmt])
    with pytest.raises(ConfigError, match="valid: " + ", ".join(FORMATS)):
        Export(formats=["onnx"])
    with pytest.raises(ConfigError, match="q3_xx; valid: " + ", ".join(QUANTS)):
        Export(formats=["gguf"], quants=["q3_xx"])


def test_every_error_class_derives_from_the_one_base():
    import fasttune.errors as errors

    defined = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                defined.append((path.relative_to(ROOT), node.name))
    assert defined and all(str(p) == "fasttune/errors.py" for p, _ in defined), defined
    for _, name in defined:
        assert issubclass(getattr(errors, name), FasttuneError), name


@pytest.mark.parametrize("name", ["ConfigError", "DataError", "TemplateError", "ExportError", "RewardError",
                                  "TrainingDiverged", "RunInterrupted", "StorageError"])
def test_the_cli_group_turns_every_fasttune_error_into_its_message_and_exit_code(name):
    """fasttune's own command group, with a command that raises each error where a real one would
    (inside the command, not while loading a recipe)."""
    import click

    import fasttune.errors as errors
    from fasttune.cli import Commands

    cls = getattr(errors, name)
    error = cls([errors.Problem("rows.jsonl:3", "label", "bad")]) if name == "DataError" else cls("what went wrong")

    @click.group(cls=Commands)
    def group():
        pass

    @group.command()
    def boom():
        raise error

    result = CliRunner().invoke(group, ["boom"])
    assert result.exit_code == cls.exit_code == (130 if name == "RunInterrupted" else 2), result.output
    assert result.output.startswith(f"{cls.label}: ") and "Traceback" not in result.output
    assert str(error) in result.output and not isinstance(result.exception, errors.FasttuneError)


def test_a_recipe_that_raises_is_named_by_its_line(tmp_path):
    from fasttune.cli import main

    recipe = tmp_path / "r.py"
    recipe.write_text("from fasttune import errors\nraise errors.TemplateError('what went wrong')\n")
    result = CliRunner().invoke(main, ["run", str(recipe)])
    assert result.exit_code == 2 and f"{recipe}:2: TemplateError: what went wrong" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_config_json_rebuilds_the_recipe(path):
    recipe = load_recipe(path)
    config = json.loads(json.dumps(recipe.to_dict()))  # what a run folder keeps
    rebuilt = Recipe.from_dict(config)
    assert rebuilt.to_dict() == config
    assert type(rebuilt.task) is type(recipe.task)
    for section in ("model", "data", "train", "eval", "log", "export"):
        assert dataclasses.asdict(getattr(rebuilt, section)) == dataclasses.asdict(getattr(recipe, section))


def test_grpo_rewards_rebuild_as_working_functions():
    recipe = Recipe.from_dict(load_recipe(ROOT / "recipes/grpo_math.py").to_dict())
    completions = [[{"role": "assistant", "content": "<think>2+2</think> 4"}], [{"role": "assistant", "content": "5"}]]
    assert recipe.task.rewards[0](None, completions, answer=["4", "4"]) == [1.0, 0.0]
    config = load_recipe(ROOT / "recipes/grpo_math.py").to_dict()
    config["task"]["rewards"] = ["my_own_reward"]
    with pytest.raises(ConfigError, match="my_own_reward.*recorded by name only"):
        Recipe.from_dict(config)


def test_overrides_do_not_depend_on_their_order():
    """The command in recipes/continued_pretraining.py's docstring, in both orders."""
    recipe = load_recipe(ROOT / "recipes/continued_pretraining.py")
    for overrides in (["model.lora.train_embeddings=false", "train.embedding_lr=0"],
                      ["train.embedding_lr=0", "model.lora.train_embeddings=false"]):
        out = apply_overrides(recipe, overrides)
        assert out.model.lora.train_embeddings is False and out.train.embedding_lr == 0
    assert recipe.model.lora.train_embeddings is True  # the loaded recipe is left as it was
    with pytest.raises(ConfigError, match="embedding_lr applies to trained embeddings"):
        apply_overrides(recipe, ["model.lora.train_embeddings=false"])  # checked once, after all are applied


@pytest.mark.parametrize("module", ["unsloth", "hf"])
def test_both_backends_satisfy_the_backend_protocol(module):
    import importlib
    import inspect

    from fasttune.backends import Backend, named
    from fasttune.memory import BackendMemory

    backend = importlib.import_module(f"fasttune.backends.{module}")  # importing it does not import unsloth
    assert backend.NAME == module and named(module) is backend
    assert isinstance(backend.MEMORY, BackendMemory) and set(Backend.__annotations__) == {"NAME", "MEMORY"}
    methods = [n for n, v in vars(Backend).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert {"load", "for_inference", "for_training", "check_stack", "gpu_path_missing"} <= set(methods)
    for name in methods:
        assert getattr(Backend, name).__doc__, f"Backend.{name} does not say what callers use it for"
        wanted = list(inspect.signature(getattr(Backend, name)).parameters)[1:]  # without self
        assert list(inspect.signature(getattr(backend, name)).parameters) == wanted, (module, name)
