"""Classification: `text` and `label` columns; the model can only ever answer a valid label.

Why label scoring rather than a classification head: a head (AutoModelForSequenceClassification)
starts from random weights, needs many more steps to learn, and is not available on Unsloth's CPU
path; it also leaves a model that chat and GGUF tools cannot run. Here the model is trained with
the ordinary SFT loss to answer the label as its chat reply, and at evaluation and `fasttune
predict` time every valid label is scored as that reply (fasttune/label_scoring.py) and the most
probable one wins. The answer is therefore always in the label set, the probability is a real
distribution over the labels, and the same LoRA adapter works on both backends.

The label set comes from the training data unless `labels` is given; an eval (or `predict --file`)
row whose label is outside it is an error naming its line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from fasttune.chat_template import tokenize_conversation
from fasttune.data.validate import require_text
from fasttune.errors import DataError, Problem
from fasttune.tasks.base import SFTTask, share

IMBALANCE = 3.0  # warn when the largest class has this many times the rows of the smallest


@dataclass
class Classification(SFTTask):
    labels: list[str] = field(default_factory=list)
    """The valid labels. Empty: every label in the training data (the resolved set is saved in config.json)."""
    instruction: str = "Classify the text. Answer with exactly one label from: {labels}."
    """The request before the text; {labels} becomes the comma-separated label list."""
    text_column: str = "text"
    """Column holding the text to classify."""
    label_column: str = "label"
    """Column holding the label (a string)."""

    name: ClassVar[str] = "classification"
    scores_outputs: ClassVar[bool] = True
    gguf_refusal: ClassVar[str | None] = (
        "a classification model cannot be exported to GGUF: llama.cpp would let it answer any text, not only a "
        "valid label. Export 'merged' or 'adapter' and use `fasttune predict`.")

    def __post_init__(self):
        self.train_counts: dict[str, int] = {}

    def check_row(self, row: dict, label_required: bool = True) -> list[tuple[str, str]]:
        """`label_required=False` for rows to predict (`fasttune predict --file`): their label may be left
        out (or null), and one they give is checked like a training row's, since predict scores it."""
        labelled = label_required or row.get(self.label_column) is not None
        problems = require_text(row, self.text_column, *([self.label_column] if labelled else []))
        if not problems and labelled and self.labels and row[self.label_column] not in self.labels:
            problems.append((self.label_column, self.unknown_label(row[self.label_column])))
        return problems

    def check_dataset(self, train_rows: list, eval_rows: list) -> list[str]:
        self.train_counts = dict(sorted(Counter(r.data[self.label_column] for r in train_rows).items()))
        if not self.labels:
            self.labels = sorted(self.train_counts)
        if len(self.labels) < 2:
            raise DataError([Problem(train_rows[0].where.rsplit(":", 1)[0], self.label_column,
                                     f"classification needs at least 2 labels, found {self.labels}")])
        problems = [Problem(r.where, self.label_column, self.unknown_label(r.data[self.label_column]))
                    for r in eval_rows if r.data[self.label_column] not in self.labels]
        if problems:
            raise DataError(problems)
        notes = [f"Labels ({len(self.labels)}): " + ", ".join(f"{k} {v}" for k, v in self.train_counts.items())]
        counts = [self.train_counts.get(label, 0) for label in self.labels]
        if min(counts) == 0 or max(counts) / min(counts) >= IMBALANCE:
            notes.append(f"Warning: imbalanced classes (largest {max(counts)} rows, smallest {min(counts)}); "
                         "accuracy will flatter the majority class, read macro-F1")
        return notes

    def data_figures(self, train_rows: list, eval_rows: list) -> dict:
        count = lambda rows: dict(sorted(Counter(r.data[self.label_column] for r in rows).items()))  # noqa: E731
        return {"labels": self.labels or sorted(count(train_rows)),
                "class_counts": {"train": count(train_rows), "eval": count(eval_rows)}}

    def unknown_label(self, label) -> str:
        return f"label {label!r} is not one of the valid labels: {', '.join(self.labels)}"

    def messages(self, text: str, label: str | None = None) -> list[dict]:
        request = self.instruction.format(labels=", ".join(self.labels))
        turns = [{"role": "user", "content": f"{request}\n\nText: {text}"}]
        return turns + ([{"role": "assistant", "content": label}] if label is not None else [])

    def tokenize(self, row: dict, tokenizer, max_length: int) -> dict:
        messages = self.messages(row[self.text_column], row[self.label_column])
        return tokenize_conversation(tokenizer, messages, max_length).example()

    def prompt(self, row: dict):
        return self.messages(row[self.text_column]), row[self.label_column]

    def probabilities(self, model, tokenizer, prompts: list) -> list[dict[str, float]]:
        from fasttune.label_scoring import label_probabilities

        return [dict(zip(self.labels, row)) for row in label_probabilities(model, tokenizer, prompts, self.labels)]

    def predict(self, model, tokenizer, prompts: list, references: list, cfg) -> list[str]:
        return [max(p, key=p.get) for p in self.probabilities(model, tokenizer, prompts)]

    def metrics(self, predictions: list[str], references: list[str], eval_loss: float | None) -> dict:
        if not predictions:
            return {}
        pairs = list(zip(references, predictions))
        f1 = {}
        for label in self.labels:
            tp = sum(r == label and p == label for r, p in pairs)
            predicted, actual = sum(p == label for _, p in pairs), sum(r == label for r, _ in pairs)
            f1[label] = round(2 * tp / (predicted + actual), 4) if predicted + actual else 0.0
        majority = max(self.train_counts, key=self.train_counts.get) if self.train_counts else self.labels[0]
        return {
            "accuracy": share(r == p for r, p in pairs),
            "macro_f1": round(sum(f1.values()) / len(f1), 4),
            "majority_baseline": share(r == majority for r, _ in pairs),
            "f1": f1,
            "confusion": {"labels": self.labels,
                          "rows_true_cols_predicted": [[sum(r == a and p == b for r, p in pairs) for b in self.labels]
                                                       for a in self.labels]},
            "class_counts": {"train": self.train_counts, "eval": dict(sorted(Counter(references).items()))},
            "rows": len(pairs),
        }

    def write_artifacts(self, run_dir: Path, before: dict, after: dict) -> None:
        if "confusion" in after:
            plot_confusion(run_dir / "confusion.png", self.labels, before.get("confusion"), after["confusion"])


def plot_confusion(path: Path, labels: list[str], before: dict | None, after: dict) -> None:
    """Confusion matrices (rows: true label, columns: predicted) before and after training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("before training", before), ("after training", after)] if before else [("after training", after)]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    for ax, (title, confusion) in zip(axes[0], panels):
        matrix = confusion["rows_true_cols_predicted"]
        ax.imshow(matrix, cmap="Blues")
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(j, i, str(count), ha="center", va="center", fontsize=9)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
