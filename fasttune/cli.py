"""The `fasttune` command line: run, check, plan, eval, predict, export, chat, serve, env.

Importing this module is cheap (no torch, transformers or trl): help, recipe checks and data
errors come back in well under a second.
"""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from pathlib import Path

import click

from fasttune.errors import ConfigError, FasttuneError
from fasttune.export.formats import FORMATS, QUANTS, parse_quants
from fasttune.tracking import plain_console

RUN_HELP = """Train with the recipe in RECIPE (a Python file ending in `recipe = Recipe(...)`).

Override any field as section.field=value, e.g. `train.lr=1e-4 model.lora.r=32 train.max_steps=100`.
`fasttune run RECIPE --help` lists every field of that recipe, its value, default and meaning.
"""


class Commands(click.Group):
    """Every command's FasttuneError (bad config, data, template, export request, a stopped run)
    becomes a message and its exit code (2; 130 for an interrupted run), with no traceback; anything
    else is a bug and keeps its traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FasttuneError as error:
            fail(error)


@click.group(cls=Commands)
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
    from fasttune.recipe import apply_overrides, load_recipe, run_command

    if recipe_path is None:
        click.echo(ctx.get_help())
        ctx.exit(0 if show_help else 2)
    recipe = apply_overrides(load_recipe(recipe_path), list(overrides))
    if show_help:
        print_recipe_help(recipe, recipe_path)
        return
    from fasttune import distributed

    config_file = recipe.train.accelerate_config
    if distributed.should_relaunch(config_file):
        if not Path(config_file).is_file():
            write = shlex.join(["accelerate", "config", "--config_file", config_file])
            raise ConfigError(f"train.accelerate_config: no file {config_file}; write one with `{write}` "
                              "or name one in recipes/accelerate/")
        distributed.relaunch(config_file, ["run", recipe_path, *overrides])
    from fasttune.run import run as run_recipe

    run_recipe(recipe, command=run_command(recipe_path, overrides))


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("recipe_path", metavar="RECIPE")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object, for scripts.")
def check(recipe_path, overrides, as_json):
    """The data as the model will see it, before any model loads: rows, token lengths, what
    max_seq_length cuts, the share of trained tokens, task figures and a rendered example per split."""
    from fasttune.check import inspect, print_report
    from fasttune.recipe import apply_overrides, load_recipe

    recipe = apply_overrides(load_recipe(recipe_path), list(overrides))
    report = inspect(recipe, say=(lambda message: None) if as_json else click.echo)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        print_report(report, plain_console())


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("recipe_path", metavar="RECIPE")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--gpu", metavar="SIZE", help="GPU memory to plan for, e.g. 16GB [default: this machine's GPU, "
              "or a table of 8-80 GB cards].")
@click.option("--json", "as_json", is_flag=True, help="The plan as one JSON object, for scripts.")
def plan(recipe_path, overrides, gpu, as_json):
    """Will RECIPE fit a GPU? The training peak estimated from the model's config alone (no weights
    loaded), broken down, and the largest batch size and max_seq_length that fit."""
    from fasttune.plan import detect_gpu, parse_gpu, print_report, report
    from fasttune.recipe import apply_overrides, load_recipe

    recipe = apply_overrides(load_recipe(recipe_path), list(overrides))
    result = report(recipe, parse_gpu(gpu) if gpu else detect_gpu())
    if as_json:
        click.echo(json.dumps(result))
    else:
        print_report(result, plain_console().print)


@main.command()
def env():
    """Hardware, library versions, which backend `auto` picks and why, and what the GPU path lacks."""
    from fasttune.env import report

    report(plain_console())


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--text", "texts", multiple=True, help="A text to classify (repeatable).")
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False),
              help="Rows to classify (.jsonl/.json/.csv/.parquet with the task's text column; "
                   "a label column is scored).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per text, with every label's probability.")
def predict(run_dir, texts, file_, as_json):
    """Label and probability for each text, from a finished classification run's adapter."""
    from fasttune.predict import load_classifier, rows_to_predict
    from fasttune.predict import predict as run_predict

    task, run = load_classifier(run_dir)
    rows = rows_to_predict(task, list(texts), file_)
    results = run_predict(run, rows, task)
    for r in results:
        line = f"{r['label']}\t{r['probability']:.3f}\t{r['text']}"
        click.echo(json.dumps(r, ensure_ascii=False) if as_json else line)
    scored = [r for r in results if r["true_label"] is not None]
    if scored and not as_json:
        correct = sum(r["label"] == r["true_label"] for r in scored)
        click.echo(f"accuracy {correct / len(scored):.3f} ({correct}/{len(scored)} rows with a label)")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--to", "formats", multiple=True, required=True, type=click.Choice(list(FORMATS)),
              help="What to write (repeatable): " + "; ".join(f"{f.name}: {f.help}" for f in FORMATS.values()) + ".")
@click.option("--quant", "quants", default="f16", show_default=True,
              help=f"GGUF types, comma-separated: {', '.join(QUANTS)}.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: RUN_DIR/export].")
@click.option("--force", is_flag=True, help="Replace outputs that already exist.")
@click.option("--verify-prompts", default=3, show_default=True,
              help="Held-out prompts each GGUF is checked on (0: skip).")
@click.option("--verify-tokens", default=32, show_default=True,
              help="Greedy tokens generated per prompt in that check.")
def export(run_dir, formats, quants, out, force, verify_prompts, verify_tokens):
    """Export a finished run: adapter, merged 16-bit weights, or GGUF checked against the merged model."""
    from fasttune.export.pipeline import export as run_export

    report = run_export(run_dir, list(formats), parse_quants(quants), out, force, verify_prompts, verify_tokens,
                        say=click.echo)
    for item in report["exports"]:
        size = f"{item['size_bytes'] / 2**20:.1f} MiB" if "size_bytes" in item else ""
        click.echo(f"{item['format']:8} {item.get('quant', ''):7} {size:>10}  {item['path']}")
    click.echo(f"Report: {(out or run_dir / 'export') / 'export.json'}")


@main.command(name="eval")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def evaluate(run_dir):
    """Redo a finished run's evaluation after training (eval loss, the task's metric, samples.md) from
    its saved adapter: what a run whose evaluation failed or was interrupted asks for."""
    from fasttune.evaluate import evaluate_run

    evaluate_run(run_dir, plain_console().print)
    click.echo(f"Evaluation written to {run_dir / 'eval.json'} and {run_dir / 'samples.md'}")


@main.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--prompt", help="Ask one question, print the answer and exit (otherwise: interactive).")
@click.option("--system", help="A system message before the conversation.")
@click.option("--continue", "prefix", metavar="TEXT",
              help="With --prompt: the answer starts with TEXT and the model continues it (no new turn).")
@click.option("--max-new-tokens", default=256, show_default=True)
@click.option("--thinking", "thinking_mode", type=click.Choice(["on", "off"]),
              help="Reasoning models: think before answering, or answer directly (the template's "
                   "enable_thinking) [default: the template's own].")
def chat(target, prompt, system, prefix, max_new_tokens, thinking_mode):
    """Chat with a run folder, a merged model folder or a .gguf, using the template it was trained with."""
    from fasttune.chat import as_message, ask, open_target
    from fasttune.thinking import switch

    if prompt is not None:
        click.echo(ask(target, prompt, system, prefix, max_new_tokens=max_new_tokens, thinking_mode=thinking_mode))
        return
    if prefix:
        fail(ConfigError("--continue needs --prompt"))
    enabled = switch(thinking_mode)
    bot = open_target(target, enabled)
    messages = [{"role": "system", "content": system}] if system else []
    click.echo("Chat: empty line or Ctrl-D to quit.")
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            break
        if not line:
            break
        messages.append({"role": "user", "content": line})
        answer = bot.complete(bot.render(messages, None, enable_thinking=enabled), max_new_tokens).strip()
        messages.append(as_message(answer))
        click.echo(answer)


@main.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; then set an API key).")
@click.option("--port", default=8000, show_default=True)
@click.option("--api-key", envvar="FASTTUNE_API_KEY", metavar="KEY",
              help="Require `Authorization: Bearer KEY` on every request [env: FASTTUNE_API_KEY].")
@click.option("--max-tokens", default=2048, show_default=True,
              help="The most new tokens one request may ask for (a larger max_tokens is refused).")
@click.option("--thinking", "thinking_mode", type=click.Choice(["on", "off"]),
              help="Reasoning models: the thinking switch when a request does not set "
                   "chat_template_kwargs.enable_thinking [default: the template's own].")
def serve(target, host, port, api_key, max_tokens, thinking_mode):
    """Serve a run folder, a merged model folder or a .gguf over an OpenAI-compatible HTTP API
    (/v1/chat/completions, /v1/completions, /v1/models, /health), with the template it was trained with."""
    from fasttune.serve import serve as run_server

    run_server(target, host, port, api_key, max_tokens, thinking_mode, say=click.echo)


def print_recipe_help(recipe, path: str) -> None:
    """Every field as `key: type = value`, then its docstring, grouped by section (argparse style)."""
    from fasttune.recipe import describe

    click.echo(f"Usage: fasttune run {shlex.quote(path)} [KEY=VALUE]...   (task: {type(recipe.task).__name__})")
    section = None
    for key, type_, value, default, doc in describe(recipe):
        if key.split(".")[0] != section:
            section = key.split(".")[0]
            click.echo(f"\n{section}:")
        changed = f"   (default {default})" if default != value else ""
        click.echo(f"  {key}: {type_} = {value}{changed}")
        if doc:
            click.echo(textwrap.fill(doc, width=100, initial_indent=" " * 6, subsequent_indent=" " * 6))

def fail(error: FasttuneError) -> None:
    """Print a user error (no traceback) and exit with its code (2; 130 for an interrupted run)."""
    if error.exit_code == 130 and OWN_PROCESS:
        # The interruption is being reported and the process ends: an interrupt now, while Python shuts
        # down, would end it as killed by SIGINT instead of with 130 (seen once in the suite's export
        # story, cause not found). Only in the command's own process: in-process callers keep Ctrl-C.
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    click.secho(f"{error.label}: ", fg="red", bold=True, err=True, nl=False)
    click.echo(str(error), err=True)
    sys.exit(error.exit_code)

OWN_PROCESS = False
"""True when this process is the `fasttune` command itself (`entry`), not a caller running its commands."""


def entry() -> None:
    """The `fasttune` command and `python -m fasttune.cli`: the command group, in a process of its own."""
    global OWN_PROCESS
    OWN_PROCESS = True
    main()


if __name__ == "__main__":
    entry()
