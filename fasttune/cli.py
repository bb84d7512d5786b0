"""The `fasttune` command line: `fasttune run RECIPE [key=value ...]`, `fasttune predict RUN_DIR`, `fasttune env`.

Importing this module is cheap (no torch, transformers or trl): help, recipe checks and data
errors come back in well under a second.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

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


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--text", "texts", multiple=True, help="A text to classify (repeatable).")
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False),
              help="Rows to classify (.jsonl/.json/.csv/.parquet with the task's text column; a label column is scored).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per text, with every label's probability.")
def predict(run_dir, texts, file_, as_json):
    """Label and probability for each text, from a finished classification run's adapter."""
    from fasttune.predict import load_classifier, predict as run_predict, rows_to_predict

    try:
        task, config = load_classifier(run_dir)
        rows = rows_to_predict(task, list(texts), file_)
        results = run_predict(run_dir, rows, task, config)
    except (ConfigError, DataError) as error:
        fail(error)
    for r in results:
        click.echo(json.dumps(r, ensure_ascii=False) if as_json else f"{r['label']}\t{r['probability']:.3f}\t{r['text']}")
    scored = [r for r in results if r["true_label"] is not None]
    if scored and not as_json:
        correct = sum(r["label"] == r["true_label"] for r in scored)
        click.echo(f"accuracy {correct / len(scored):.3f} ({correct}/{len(scored)} rows with a label)")


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
