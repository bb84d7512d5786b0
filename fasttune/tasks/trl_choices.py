"""The values the installed TRL accepts for an option with a fixed set of them (GRPO's loss_type).

A recipe asking for a value the installed TRL lacks is refused when the recipe is built, before any
model loads, naming the values it has. They are read from TRL's own field help ("Supported values
are 'grpo', 'dr_grpo', ..."), from the source of its config module, not by importing it: importing
trl pulls in transformers, which must come after Unsloth (fasttune/backends/__init__.py). The
installed TRL is the authority, so a TRL upgrade that adds a loss needs no change here; a help text
that stops listing its values reads as "unknown", and TRL itself then judges the value.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from functools import cache
from pathlib import Path


@cache
def listed(module_file: str, config_class: str, field: str) -> tuple[str, ...]:
    """The quoted names after "Supported values are" in the help of `config_class.field`, defined in
    trl/`module_file`; () when TRL is not installed or the help lists none."""
    spec = importlib.util.find_spec("trl")  # a top-level package: found, not imported
    if spec is None or not spec.submodule_search_locations:
        return ()
    path = Path(next(iter(spec.submodule_search_locations))) / module_file
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return ()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == config_class:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and getattr(item.target, "id", None) == field:
                    found = re.search(r"Supported values are (.+?)\.\s", _help(item.value))
                    return tuple(re.findall(r"'(\w+)'", found.group(1))) if found else ()
    return ()


def _help(value: ast.expr | None) -> str:
    """The help string of a `field(default=..., metadata={"help": ...})` call ('' if it has none)."""
    if not isinstance(value, ast.Call):
        return ""
    for keyword in value.keywords:
        if keyword.arg == "metadata":
            try:
                return str(ast.literal_eval(keyword.value).get("help", ""))
            except (ValueError, AttributeError):
                return ""
    return ""
