"""Tokenize validated rows into the datasets trainers read, and count what was cut, a row at a time.

Each row is tokenized once per run: the pass that builds the dataset also gathers the figures that
`fasttune check` prints and a run's first lines repeat (`SplitFigures`: lengths counted, not kept).
Datasets are built in Arrow a chunk of rows at a time (`to_dataset`): a Python list of every row's
token ids would cost about 36 bytes a token before the copy Arrow makes of it (4 bytes a token).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from fasttune.chat_template import IGNORE

BINS = 10
CHUNK = 4096  # rows converted to Arrow at once


class SplitFigures:
    """A split's length figures, gathered one row view (tasks/base.py's RowView) at a time: how many
    rows have each length, and sums of what max_seq_length cuts and what carries the loss."""

    def __init__(self):
        self.lengths: Counter[int] = Counter()
        self.rows_cut = self.tokens_cut = self.kept = self.trained = 0

    def add(self, view) -> None:
        self.lengths[view.tokens] += 1
        self.rows_cut += view.cut > 0
        self.tokens_cut += view.cut
        self.kept += view.tokens - view.cut
        self.trained += view.trained

    def report(self, max_length: int) -> dict:
        """{rows, tokens, length percentiles, histogram, rows_cut, tokens_cut, trained_share}."""
        longest = max(self.lengths, default=0)
        return {
            "rows": sum(self.lengths.values()),
            "tokens": sum(n * count for n, count in self.lengths.items()),
            "length": {"p50": self.percentile(50), "p90": self.percentile(90), "p99": self.percentile(99),
                       "max": longest},
            "histogram": self.histogram(max(max_length, longest)),
            "rows_cut": self.rows_cut,
            "tokens_cut": self.tokens_cut,
            "trained_share": round(self.trained / self.kept, 4) if self.kept else 0.0,
        }

    def percentile(self, p: float) -> int:
        """Nearest-rank percentile (a real row's length, not an interpolation)."""
        rank, seen = max(1, -(-sum(self.lengths.values()) * p // 100)), 0  # ceil
        for n in sorted(self.lengths):
            seen += self.lengths[n]
            if seen >= rank:
                return n
        return 0

    def histogram(self, top: int) -> list[dict]:
        """BINS equal-width bins over 0..top tokens: [{"from", "to", "rows"}]."""
        width = max(1, -(-top // BINS))
        bins = [{"from": i * width + 1, "to": (i + 1) * width, "rows": 0} for i in range(BINS)]
        for n, count in self.lengths.items():
            bins[min((n - 1) // width, BINS - 1) if n > 0 else 0]["rows"] += count
        return bins


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
    figures: SplitFigures = field(default_factory=SplitFigures, repr=False)
    """Every row's view, kept or dropped, for the summary lines (not in eval.json)."""

    def to_dict(self) -> dict:
        return {"rows": self.rows, "truncated": self.truncated, "dropped": self.dropped, "tokens": self.tokens,
                "trained_tokens": self.trained_tokens}


def tokenize_rows(task, rows: Iterable, tokenizer, max_length: int):
    """A `datasets.Dataset` with input_ids and labels, plus PrepStats, tokenizing each row once
    (`SFTTask.tokenized`: the example and its view)."""
    import pyarrow as pa

    stats = PrepStats()

    def examples():
        for row in rows:
            example, view = task.tokenized(row.data, tokenizer, max_length)
            stats.figures.add(view)
            trained = sum(label != IGNORE for label in example["labels"])
            stats.truncated += example["truncated"]
            if trained == 0:
                stats.dropped += 1
                continue
            stats.rows += 1
            stats.tokens += len(example["input_ids"])
            stats.trained_tokens += trained
            yield {"input_ids": example["input_ids"], "labels": example["labels"]}

    schema = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32()))])
    return to_dataset(examples(), schema), stats


def to_dataset(records: Iterable[dict], schema=None):
    """A `datasets.Dataset` of `records`, converted to Arrow CHUNK at a time (columns typed by `schema`,
    else as Arrow infers them; a chunk's nulls take the type other chunks give the column)."""
    import datasets
    import pyarrow as pa

    tables, chunk = [], []
    for record in records:
        chunk.append(record)
        if len(chunk) == CHUNK:
            tables.append(pa.Table.from_pylist(chunk, schema=schema))
            chunk = []
    if chunk or not tables:
        tables.append(pa.Table.from_pylist(chunk, schema=schema))
    return datasets.Dataset(pa.concat_tables(tables, promote_options="default"))
