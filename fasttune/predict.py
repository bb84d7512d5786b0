"""`fasttune predict RUN_DIR`: labels and probabilities from a finished classification run.

The run folder has all it needs: config.json names the base model and the resolved label set, and
adapter/ holds the LoRA weights and tokenizer (model/ the whole model, when fully fine-tuned). Plain
transformers + peft load them (no Unsloth:
prediction needs none of its training patches, and it keeps start-up short).
"""

from __future__ import annotations

from pathlib import Path

from fasttune.data.load import Row, load_rows
from fasttune.errors import ConfigError, DataError, Problem
from fasttune.run_folder import FinishedRun, open_run
from fasttune.tasks import Classification


def load_classifier(run_dir: Path) -> tuple[Classification, FinishedRun]:
    """The run's task (with its label set) and the run, refusing runs that cannot predict."""
    run = open_run(run_dir)
    if run.task_class() is not Classification:
        raise ConfigError(f"{run_dir}: predict is for classification runs; this run's task is {run.task_type}")
    task_cfg = {k: v for k, v in run.config["task"].items() if k != "type"}
    return Classification(**task_cfg), run


def rows_to_predict(task: Classification, texts: list[str], file: str | None) -> list[Row]:
    """--text values and --file rows, checked as the task checks its rows; a file row's label, when
    present, must be a valid label."""
    rows = [Row(f"--text {i + 1}", {task.text_column: t}) for i, t in enumerate(texts)]
    if file:
        problems = []
        for row in load_rows(file):
            problems += [Problem(row.where, f, m) for f, m in task.check_row(row.data, label_required=False)]
            rows.append(row)
        if problems:
            raise DataError(problems)
    if not rows:
        raise ConfigError("nothing to predict: give --text TEXT or --file ROWS.jsonl")
    return rows


def predict(run: FinishedRun, rows: list[Row], task: Classification) -> list[dict]:
    import torch

    from fasttune import precision

    cuda = precision.cuda()
    model, tokenizer = run.load_model(precision.gpu_dtype() if cuda else torch.float32)
    if cuda:
        model = model.to("cuda")
    prompts = [task.messages(r.data[task.text_column]) for r in rows]
    results = []
    for row, probs in zip(rows, task.probabilities(model, tokenizer, prompts)):
        label = max(probs, key=probs.get)
        results.append({"text": row.data[task.text_column], "label": label, "probability": round(probs[label], 4),
                        "true_label": row.data.get(task.label_column), "probabilities": probs})
    return results
