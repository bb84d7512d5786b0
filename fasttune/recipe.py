"""Recipes: load one from a Python file, override its fields from the command line, describe it.

A recipe file is plain Python that ends with `recipe = Recipe(...)`. Overrides such as
`train.lr=1e-4 model.lora.r=32` are parsed against the dataclass field types, so a typo or a
bad value fails at once with the valid keys or the expected type, not an hour into training.
All overrides are applied first and the recipe is checked once after, so their order never
matters (`model.lora.train_embeddings=false train.embedding_lr=0` works either way round).

`Recipe.to_dict()` is what a run folder keeps as config.json; `Recipe.from_dict` rebuilds it.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import inspect
import json
import runpy
import shlex
import traceback
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fasttune.config import Data, Eval, Export, Log, Model, Train
from fasttune.errors import ConfigError
from fasttune.export import formats as export_formats
from fasttune.run_folder import check_name

SECTIONS = ("task", "model", "data", "train", "eval", "log", "export")


@dataclass
class Recipe:
    task: Any
    """The task: one of fasttune.tasks (e.g. tasks.ChatSFT())."""
    data: Data
    model: Model = field(default_factory=Model)
    train: Train = field(default_factory=Train)
    eval: Eval = field(default_factory=Eval)
    log: Log = field(default_factory=Log)
    export: Export = field(default_factory=Export)
    name: str = ""
    """Run name prefix: runs go into log.runs_dir/<name>-<timestamp>, so it has no '/'; defaults to the
    recipe file's name."""

    def __post_init__(self):
        """Checks across sections (each section checks its own fields)."""
        if self.train.embedding_lr and not self.model.lora.train_embeddings:
            raise ConfigError("train.embedding_lr applies to trained embeddings: set model.lora.train_embeddings=true")
        if "gguf" in self.export.formats and self.task.gguf_refusal:
            raise ConfigError(f"export.formats: {self.task.gguf_refusal}")
        if self.model.full_finetune and self.task.full_finetune_refusal:
            raise ConfigError(f"model.full_finetune: {self.task.full_finetune_refusal}")
        if self.model.full_finetune and "adapter" in self.export.formats:
            raise ConfigError(f"export.formats: {export_formats.NO_ADAPTER}")
        self.task.check_train(self.train)
        check_name(self.name)

    def to_dict(self) -> dict:
        task = {k: plain(v) for k, v in dataclasses.asdict(self.task).items()}
        out = {"name": self.name, "task": {"type": type(self.task).__name__, **task}}
        out.update({s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS[1:]})
        return out

    @classmethod
    def from_dict(cls, config: dict) -> Recipe:
        """The recipe a run folder's config.json records (every field; GRPO rewards by their recorded call)."""
        from fasttune.config import LoRA
        from fasttune.tasks import task_class

        task_cfg = {k: v for k, v in config["task"].items() if k != "type"}
        model_cfg = dict(config["model"])
        return cls(task=task_class(config["task"]["type"]).from_config(task_cfg),
                   model=Model(**{**model_cfg, "lora": LoRA(**model_cfg["lora"])}), data=Data(**config["data"]),
                   train=Train(**config["train"]), eval=Eval(**config["eval"]), log=Log(**config["log"]),
                   export=Export(**config["export"]), name=config["name"])


def plain(value: Any) -> Any:
    """Functions (GRPO rewards) by the call that made them, or their name, for config.json and --help."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if callable(value):
        return getattr(value, "spec", getattr(value, "__name__", repr(value)))
    return value


def load_recipe(path: str | Path) -> Recipe:
    """Run the recipe file and return its `recipe` object, named after the file unless it has a name."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such recipe file")
    try:
        namespace = runpy.run_path(str(path))
    except Exception as error:  # name the recipe line, not a traceback through runpy
        line = next((f.lineno for f in traceback.extract_tb(error.__traceback__)
                     if Path(f.filename).resolve() == path.resolve()), None)
        where = f"{path}:{line}" if line else str(path)
        detail = str(error) if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}"
        raise ConfigError(f"{where}: {detail}") from None
    recipe = namespace.get("recipe")
    if not isinstance(recipe, Recipe):
        raise ConfigError(f"{path}: the file must define `recipe = Recipe(...)`")
    if not recipe.name:
        recipe.name = path.stem
    recipe.data.path = locate(recipe.data.path, path.parent)
    if isinstance(recipe.data.eval, str):
        recipe.data.eval = locate(recipe.data.eval, path.parent)
    return recipe


def locate(data_path: str, recipe_dir: Path) -> str:
    """A data path written in a recipe, as the file it names: relative to the current directory when
    it exists there, else relative to the recipe's folder or one above it (so the shipped recipes,
    whose paths start at the repository root, run from any directory). Anything else (a hub dataset
    id, a missing file) is left as written, for the data loader to use or to report."""
    candidate = Path(data_path)
    if candidate.is_absolute() or candidate.exists():
        return data_path
    for base in (recipe_dir.resolve(), *recipe_dir.resolve().parents):
        if (base / candidate).exists():
            return str(base / candidate)
    return data_path


def apply_overrides(recipe: Recipe, overrides: list[str]) -> Recipe:
    """A copy of `recipe` with every `section.field=value` applied (each parsed against its field's
    type), then checked once as a whole."""
    recipe = copy.deepcopy(recipe)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.field=value, e.g. train.lr=1e-4")
        _set(recipe, key.split("."), raw, key)
    check(recipe)
    return recipe


def run_command(path: str | Path, overrides) -> str:
    """`fasttune run PATH OVERRIDES...` quoted for a shell, without any train.resume override: what an
    interrupted run's resume hint extends with its own train.resume."""
    again = [o for o in overrides if not o.startswith("train.resume=")]
    return shlex.join(["fasttune", "run", str(path), *again])


def check(obj: Any) -> None:
    """Run every dataclass's own checks (`__post_init__`), innermost first, then the recipe's."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check(value)
    post_init = getattr(obj, "__post_init__", None)
    if post_init:
        post_init()


def _set(obj: Any, parts: list[str], raw: str, key: str, prefix: str = "") -> None:
    names = {f.name for f in dataclasses.fields(obj)}
    head = parts[0]
    if head not in names:
        raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(all_keys(obj, prefix))}")
    value = getattr(obj, head)
    if dataclasses.is_dataclass(value):
        if len(parts) == 1:
            raise ConfigError(f"{key!r} is a section; set one of: {', '.join(all_keys(value, f'{prefix}{head}.'))}")
        _set(value, parts[1:], raw, key, f"{prefix}{head}.")
        return
    if len(parts) > 1:
        kind = type_name(_field_type(type(obj), head))
        raise ConfigError(f"{prefix}{head} is a {kind}, it has no field {parts[1]!r}")
    setattr(obj, head, parse_value(raw, _field_type(type(obj), head), key))  # checked by check() after all are set


def all_keys(obj: Any, prefix: str = "") -> list[str]:
    """Every settable dotted key below a dataclass instance."""
    keys = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys += all_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def parse_value(raw: str, tp: Any, key: str) -> Any:
    """Parse a command-line string as type `tp` (bool, int, float, str, Literal, list[str], unions, None)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and raw.lower() in ("none", "null"):
            return None
        for option in [a for a in args if a is not type(None)]:
            try:
                return parse_value(raw, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {raw!r}")
    if origin is Literal:
        if raw not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}; got {raw!r}")
        return raw
    if origin is list:
        items = _parse_list(raw)
        return [parse_value(str(i), args[0], key) for i in items] if args else items
    if tp is bool:
        lowered = raw.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {raw!r}")
    if tp in (int, float):
        try:
            return tp(raw)
        except ValueError:
            raise ConfigError(f"{key}: expected {tp.__name__}, got {raw!r}") from None
    if tp is str:
        return raw
    raise ConfigError(f"{key}: cannot be set from the command line (type {type_name(tp)})")


def _parse_list(raw: str) -> list:
    """'[]', '["a","b"]' (JSON) or 'a,b' (comma-separated)."""
    if raw.startswith("["):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = [x.strip() for x in raw.strip("[]").split(",") if x.strip()]
        return list(value)
    return [x.strip() for x in raw.split(",") if x.strip()]


def type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is list:
        return f"list[{type_name(args[0])}]" if args else "list"
    return getattr(tp, "__name__", str(tp))


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (litgpt style), read from the class source."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    docs, body = {}, tree.body[0].body
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def describe(recipe: Recipe) -> list[tuple[str, str, str, str, str]]:
    """(key, type, recipe value, default, docstring) for every settable field, for --help."""
    rows = []

    def walk(obj: Any, prefix: str) -> None:
        docs = field_docs(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = "(required)"
            rows.append((prefix + f.name, type_name(_field_type(type(obj), f.name)), repr(plain(value)),
                         repr(default) if default != "(required)" else default, docs.get(f.name, "")))

    for section in SECTIONS:
        walk(getattr(recipe, section), f"{section}.")
    return rows
