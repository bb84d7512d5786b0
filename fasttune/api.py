"""fasttune from Python (notebooks, scripts): the CLI's steps as functions that return objects.

    import fasttune
    recipe = fasttune.load("recipes/chat_sft.py", "train.max_steps=20")   # or a Recipe built in code
    fasttune.check(recipe)                       # the data as the model will see it (no model loads)
    run = fasttune.train(recipe)                 # a Run over the run folder
    run.before, run.after, run.samples, run.metrics
    report = run.export(["gguf", "merged"], quant="q4_k_m")
    fasttune.chat(report["exports"][0]["path"], "Who are you?")

Everything here calls the same code as the CLI (fasttune/run.py, export/pipeline.py, chat.py,
predict.py); a Run only reads what `fasttune run` wrote, so `fasttune.Run(path)` opens any finished
run, also one trained from the shell. Errors are the CLI's: a FasttuneError subclass with the
message the CLI would print.
"""

from __future__ import annotations

from pathlib import Path

# Imported here, while the package loads, so that `fasttune.chat` and `fasttune.check` stay the
# functions below: a submodule imported for the first time later would replace that package attribute
# with itself, and a second `fasttune.check(...)` in the same session would call a module.
from fasttune import chat as chat_module
from fasttune import check as check_module
from fasttune.recipe import Recipe, apply_overrides, load_recipe, run_command
from fasttune.run_folder import open_run, read_json, read_status, run_folder


def load(recipe: str | Path | Recipe, *overrides: str) -> Recipe:
    """A recipe from its file (or a copy of one built in code) with `section.field=value` overrides."""
    return apply_overrides(recipe if isinstance(recipe, Recipe) else load_recipe(recipe), list(overrides))


def check(recipe: Recipe, show: bool = True) -> dict:
    """`fasttune check`: rows, token lengths, truncation, trained share and a rendered example per
    split, printed when `show`; returned as the report dict either way."""
    from fasttune.backends import choose
    from fasttune.tracking import plain_console

    # A notebook's kernel lives on: the tokenizer read here imports transformers, and Unsloth must be
    # imported before it for `train` in the same kernel to get Unsloth's patches. The CLI's check is
    # its own process and skips this (it stays instant).
    choose(recipe.model.backend)
    report = check_module.inspect(recipe, say=print if show else (lambda message: None))
    if show:
        check_module.print_report(report, plain_console())
    return report


def train(recipe: str | Path | Recipe, *overrides: str) -> Run:
    """`fasttune run`: train, evaluate before and after, save; the finished run. `recipe` is a file
    (then an interruption's resume hint is the equivalent shell command) or a Recipe."""
    from fasttune.run import run as run_recipe

    if isinstance(recipe, Recipe):
        command = "fasttune.train(recipe) with the override"
    else:
        command = run_command(recipe, overrides)
    return Run(run_recipe(load(recipe, *overrides), command=command))


def chat(target: str | Path, prompt: str, system: str | None = None, tools: list[dict] | None = None,
         max_new_tokens: int = 256, thinking: str | bool | None = None) -> str:
    """One answer from a run folder, a merged folder or a .gguf, with the template it was trained with;
    `tools` (function-calling runs) are JSON-schema tool definitions, as in the training rows;
    `thinking` ('on' / 'off', or a bool) sets the template's enable_thinking (reasoning models)."""
    return chat_module.ask(Path(target), prompt, system, tools=tools, max_new_tokens=max_new_tokens,
                           thinking_mode=thinking)


class Run:
    """A run folder, read: status, eval before/after, samples, per-step metrics, figures; and the
    commands that work on a finished run (export, predict, chat)."""

    def __init__(self, path: str | Path):
        self.path = run_folder(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status['status']!r})"

    @property
    def status(self) -> dict:
        return read_status(self.path)

    @property
    def summary(self) -> dict:
        """eval.json: task, backend, before/after, steps, tokens/s, runtime."""
        return read_json(self.path, "eval.json")

    @property
    def before(self) -> dict:
        return self.summary["before"]

    @property
    def after(self) -> dict:
        return self.summary["after"]

    def compare(self) -> list[dict]:
        """The measured figures as rows {metric, before, after}, e.g. for a table."""
        before, after = self.before, self.after
        return [{"metric": key, "before": before.get(key), "after": after[key]}
                for key, value in after.items() if isinstance(value, (int, float)) or value is None]

    @property
    def samples(self) -> list[dict]:
        """samples.json: held-out prompts with the answers before and after training and the reference."""
        return read_json(self.path, "samples.json")

    @property
    def metrics(self) -> list[dict]:
        """metrics.jsonl, one dict per logged step (training loss, eval loss, tokens/s...); [] before the first."""
        from fasttune.tracking import read_metrics

        return read_metrics(self.path / "metrics.jsonl")

    @property
    def figures(self) -> list[Path]:
        """The run's plots: loss.png, and the task's own (classification: confusion.png)."""
        return sorted(self.path.glob("*.png"))

    @property
    def wandb(self) -> str:
        """Where W&B logged the run: offline, with the `wandb sync` command that uploads it, or online."""
        from fasttune.tracking import wandb_sync_commands

        offline = wandb_sync_commands(self.path)
        if offline:
            return "offline: upload with " + " && ".join(offline)
        if (self.path / "wandb").is_dir():
            return f"online: see your W&B project; local files in {self.path / 'wandb'}"
        return "not logged to W&B (log.report_to has no 'wandb')"

    def export(self, to: list[str] | str, quant: str = "f16", out: str | Path | None = None,
               force: bool = False, verify_prompts: int = 3) -> dict:
        """`fasttune export`: the report (export.json) with each output's path and, for GGUF, how
        many greedy tokens agree with the merged model on held-out prompts."""
        from fasttune.export.formats import parse_quants
        from fasttune.export.pipeline import export

        formats = [to] if isinstance(to, str) else list(to)
        return export(self.path, formats, parse_quants(quant), Path(out) if out else None, force, verify_prompts,
                      say=print)

    def predict(self, texts: list[str]) -> list[dict]:
        """`fasttune predict` (classification runs): label and probability of every text."""
        from fasttune.predict import load_classifier, predict, rows_to_predict

        task, run = load_classifier(self.path)
        return predict(run, rows_to_predict(task, list(texts), None), task)

    def chat(self, prompt: str, system: str | None = None, tools: list[dict] | None = None,
             max_new_tokens: int = 256, thinking: str | bool | None = None) -> str:
        """One answer from the trained model (base + LoRA adapter, or the fully fine-tuned weights), as
        `fasttune chat RUN --prompt`."""
        open_run(self.path)  # a clear error unless the run finished
        return chat(self.path, prompt, system, tools, max_new_tokens, thinking)
