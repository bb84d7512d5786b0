"""The `fasttune` command line: `fasttune run RECIPE [key=value ...]` and `fasttune env`.

Importing this module is cheap (no torch, transformers or trl): help, recipe checks and data
errors come back in well under a second.
"""

from __future__ import annotations

import sys
import textwrap

import click
from rich.console import Console

from fasttune.config import ConfigError
from fasttune.data.validate import DataError

RUN_HELP = """Train with the recipe in RECIPE (a Python file ending in `recipe = Recipe(...)`).

Override any field as section.field=value, e.g. `train.lr=1e-4 model.lora.r=32 train.max_steps=100`.
`fasttune run RECIPE --help` lists every field of that recipe, its value, default and meaning.
"""


@click.group()
@click.version_option(package_name="fasttune")
def main():
    """Fine-tune LLMs fast: Unsloth on one GPU, transformers + peft elsewhere."""
    if hasattr(sys.stdout, "reconfigure"):  # progress lines reach CI logs and pipes as they happen
        sys.stdout.reconfigure(line_buffering=True)


@main.command(help=RUN_HELP, add_help_option=False, context_settings={"ignore_unknown_options": True})
@click.argument("recipe_path", metavar="RECIPE", required=False)
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--help", "show_help", is_flag=True, help="Show this message, or with RECIPE, the recipe's fields.")
@click.pass_context
def run(ctx, recipe_path, overrides, show_help):
    from fasttune.recipe import apply_overrides, load_recipe

    if recipe_path is None:
        click.echo(ctx.get_help())
        ctx.exit(0 if show_help else 2)
    try:
        recipe = apply_overrides(load_recipe(recipe_path), list(overrides))
        if show_help:
            print_recipe_help(recipe, recipe_path)
            return
        from fasttune.run import run as run_recipe

        run_recipe(recipe)
    except (ConfigError, DataError) as error:
        fail(error)


@main.command()
def env():
    """Hardware, library versions, which backend `auto` picks and why, and what the GPU path lacks."""
    from fasttune.env import report

    report(Console())


def print_recipe_help(recipe, path: str) -> None:
    """Every field as `key: type = value`, then its docstring, grouped by section (argparse style)."""
    from fasttune.recipe import describe

    click.echo(f"Usage: fasttune run {path} [KEY=VALUE]...   (task: {type(recipe.task).__name__})")
    section = None
    for key, type_, value, default, doc in describe(recipe):
        if key.split(".")[0] != section:
            section = key.split(".")[0]
            click.echo(f"\n{section}:")
        changed = f"   (default {default})" if default != value else ""
        click.echo(f"  {key}: {type_} = {value}{changed}")
        if doc:
            click.echo(textwrap.fill(doc, width=100, initial_indent=" " * 6, subsequent_indent=" " * 6))

def fail(error: Exception) -> None:
    """Print a user error (no traceback) and exit 2."""
    label = "Data error" if isinstance(error, DataError) else "Error"
    click.secho(f"{label}: ", fg="red", bold=True, err=True, nl=False)
    click.echo(str(error), err=True)
    sys.exit(2)

if __name__ == "__main__":
    main()
