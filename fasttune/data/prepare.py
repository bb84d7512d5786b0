"""Tokenize validated rows into the `input_ids`/`labels` dataset TRL trains on, and count what was cut."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from fasttune.chat_template import IGNORE


@dataclass
class PrepStats:
    rows: int = 0
    """Examples kept (documents, for pre-training tasks, before they are packed into rows)."""
    truncated: int = 0
    """Rows longer than max_seq_length, cut at the end."""
    dropped: int = 0
    """Rows left with no trained token after truncation (they would add nothing but compute)."""
    tokens: int = 0
    trained_tokens: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def tokenize_rows(task, rows: list, tokenizer, max_length: int):
    """A `datasets.Dataset` with input_ids and labels, plus PrepStats."""
    import datasets

    stats = PrepStats()
    columns = {"input_ids": [], "labels": []}
    for row in rows:
        example = task.tokenize(row.data, tokenizer, max_length)
        trained = sum(label != IGNORE for label in example["labels"])
        stats.truncated += example["truncated"]
        if trained == 0:
            stats.dropped += 1
            continue
        stats.rows += 1
        stats.tokens += len(example["input_ids"])
        stats.trained_tokens += trained
        columns["input_ids"].append(example["input_ids"])
        columns["labels"].append(example["labels"])
    return datasets.Dataset.from_dict(columns), stats
