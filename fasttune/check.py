"""`fasttune check RECIPE`: the data as the model will see it, before any model loads.

Only the tokenizer is loaded. Every row is checked (problems exit 2 with file:line:field, exactly as
`fasttune run` reports them), then rendered and tokenized by the task as training will: rows per
split, token-length percentiles and a histogram, what max_seq_length cuts, the share of tokens that
carry the loss, the task's own figures, and one rendered example per split with the trained text
inside [[ ]]. Rows are read a file pass at a time and only their figures kept (fasttune/data/).
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from fasttune.data.load import load_splits
from fasttune.data.prepare import SplitFigures
from fasttune.plan import check_model, resolve_auto
from fasttune.recipe import Recipe


def inspect(recipe: Recipe, say=print) -> dict:
    """The report as a JSON-ready dict. Raises DataError / ConfigError like `fasttune run` does."""
    task, data = recipe.task, recipe.data
    train_rows, eval_rows = load_splits(data, task.check_row, recipe.train.seed)
    notes = task.check_dataset(train_rows, eval_rows)  # the run prints them too: labels, balance warnings
    for note in notes:
        say(note)
    check_model(recipe)  # what `fasttune run` would refuse about the model, refused here too
    tokenizer = load_tokenizer(recipe.model.name, say)
    template = task.setup_tokenizer(tokenizer, recipe.model.chat_template)
    recipe = resolve_auto(recipe, lambda: longest_row(task, train_rows, tokenizer), say)
    data = recipe.data
    report = {"recipe": recipe.name, "task": task.name, "model": recipe.model.name, "chat_template": str(template),
              "trains": recipe.model.trains(),
              "data": {"train": data.path, "eval": data.eval},
              "max_seq_length": data.max_seq_length, "gradient_checkpointing": recipe.train.gradient_checkpointing,
              "splits": {}, "figures": task.data_figures(train_rows, eval_rows), "notes": notes,
              "examples": {}}
    report["splits"] = {split: figures(task, rows, tokenizer, data.max_seq_length)
                        for split, rows in (("train", train_rows), ("eval", eval_rows))}
    for split, rows in (("train", train_rows), ("eval", eval_rows)):
        if rows:
            report["examples"][split] = {"where": rows[0].where,
                                         "text": task.show_row(rows[0].data, tokenizer, data.max_seq_length)}
    return report


def load_tokenizer(name: str, say):
    from transformers import AutoTokenizer

    from fasttune import models

    return AutoTokenizer.from_pretrained(models.resolve(name, say))


def longest_row(task, rows: list, tokenizer) -> int:
    """The longest row in tokens, rendered as training renders it (what max_seq_length=auto covers)."""
    return max((task.view_row(r.data, tokenizer, 10**9).tokens for r in rows), default=16)


def figures(task, rows, tokenizer, max_length: int) -> dict:
    """One split's figures, its checked rows viewed one at a time (`fasttune run` gets the same figures
    from the pass that tokenizes its datasets: PrepStats.figures)."""
    gathered = SplitFigures()
    for row in rows:
        gathered.add(task.view_row(row.data, tokenizer, max_length))
    return gathered.report(max_length)


def summary_line(split: str, fig: dict) -> str:
    length = fig["length"]
    text = (f"{split}: {fig['rows']} rows, {fig['tokens']} tokens; length p50 {length['p50']}, p90 {length['p90']}, "
            f"p99 {length['p99']}, max {length['max']}; {fig['trained_share']:.0%} of the kept tokens carry the loss")
    if fig["rows_cut"]:
        text += f"; max_seq_length cuts {fig['rows_cut']} rows ({fig['tokens_cut']} tokens)"
    return text


def print_report(report: dict, console: Console) -> None:
    """The report for people, through fasttune's plain console (tracking.plain_console): the recipe's
    name, paths and rows are printed as written, never read as markup."""
    say = console.print
    say(Text.assemble((report["recipe"], "bold"), f": task {report['task']}, model {report['model']} "
                      f"(chat template: {report['chat_template']}), max_seq_length {report['max_seq_length']}, "
                      f"gradient checkpointing {'on' if report['gradient_checkpointing'] else 'off'} on this machine"))
    say(f"trains: {report['trains']}", highlight=False)
    say(f"data: train {report['data']['train']}, eval {report['data']['eval']}", highlight=False)
    for split, fig in report["splits"].items():
        say("")
        say(summary_line(split, fig), highlight=False)
        peak = max((b["rows"] for b in fig["histogram"]), default=0) or 1
        for b in fig["histogram"]:
            bar = "█" * round(30 * b["rows"] / peak)
            marker = "  <- max_seq_length" if b["from"] <= report["max_seq_length"] <= b["to"] else ""
            say(f"  {b['from']:>6}-{b['to']:<6} {b['rows']:>6} {bar}{marker}")
    if report["figures"]:
        say("")
        for key, value in report["figures"].items():
            say(f"{key}: {value}")
    for split, example in report["examples"].items():
        say(Text.assemble("\n", (f"{split} example", "bold"), f" ({example['where']}; trained text inside [[ ]]):"))
        say(example["text"], highlight=False)
