"""`fasttune predict RUN_DIR`: labels and probabilities from a finished classification run.

The run folder has all it needs: config.json names the base model and the resolved label set, and
adapter/ holds the LoRA weights and tokenizer. Plain transformers + peft load them (no Unsloth:
prediction needs none of its training patches, and it keeps start-up short).
"""

from __future__ import annotations

import json
from pathlib import Path

from fasttune.config import ConfigError
from fasttune.data.load import Row, load_rows
from fasttune.data.validate import DataError, Problem
from fasttune.tasks import Classification


def load_classifier(run_dir: Path) -> tuple[Classification, dict]:
    """The run's task (with its label set) and config, refusing runs that cannot predict."""
    status_file, config_file = run_dir / "status.json", run_dir / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.json)")
    status = json.loads(status_file.read_text())["status"] if status_file.is_file() else "unknown"
    if status != "finished":
        raise ConfigError(f"{run_dir}: the run did not finish (status: {status}), so it has no final adapter")
    config = json.loads(config_file.read_text())
    task_cfg = dict(config["task"])
    if task_cfg.pop("type") != "Classification":
        raise ConfigError(f"{run_dir}: predict is for classification runs; this run's task is {config['task']['type']}")
    return Classification(**task_cfg), config


def rows_to_predict(task: Classification, texts: list[str], file: str | None) -> list[Row]:
    """--text values and --file rows; a file row's label, when present, must be a valid label."""
    rows = [Row(f"--text {i + 1}", {task.text_column: t}) for i, t in enumerate(texts)]
    if file:
        problems = []
        for row in load_rows(file):
            text, label = row.data.get(task.text_column), row.data.get(task.label_column)
            if not isinstance(text, str) or not text.strip():
                problems.append(Problem(row.where, task.text_column, "missing or not a non-empty string"))
            elif label is not None and label not in task.labels:
                problems.append(Problem(row.where, task.label_column, task._unknown(label)))
            rows.append(row)
        if problems:
            raise DataError(problems)
    if not rows:
        raise ConfigError("nothing to predict: give --text TEXT or --file ROWS.jsonl")
    return rows


def predict(run_dir: Path, rows: list[Row], task: Classification, config: dict) -> list[dict]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fasttune import models

    base_path = models.resolve(config["model"]["name"])
    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
    model = PeftModel.from_pretrained(base, run_dir / "adapter").eval()
    if torch.cuda.is_available():
        model = model.to("cuda")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
    prompts = [task.messages(r.data[task.text_column]) for r in rows]
    results = []
    for row, probs in zip(rows, task.probabilities(model, tokenizer, prompts)):
        label = max(probs, key=probs.get)
        results.append({"text": row.data[task.text_column], "label": label, "probability": round(probs[label], 4),
                        "true_label": row.data.get(task.label_column), "probabilities": probs})
    return results
