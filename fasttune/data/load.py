"""Training data as `Rows`: a file's rows read again on each pass, each row naming where it came from.

A file is read once to check it (`load_rows`: every row through the text checks and the task's
`check_row`, every problem gathered) and again whenever a step needs its rows (the task's checks
across rows, `fasttune check`'s figures, tokenizing), never held whole: a pass keeps one row at a
time, and an eval split is a mask over row numbers (one byte a row). Readers for each file type are in
fasttune/data/formats.py, where the reasons for each are.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

from fasttune.data.formats import Reader, Row, reader
from fasttune.data.validate import check_rows
from fasttune.errors import DataError, Problem

__all__ = ["Row", "Rows", "load_rows", "load_splits", "split_rows"]


class Rows:
    """The checked rows of one file (or of a mask over them), in file order: `len`, iteration (the file
    read again), `rows[i]` and `rows[:n]` (the first rows only)."""

    def __init__(self, read: Reader, source: str, count: int, keep: bytearray | None = None):
        self.read, self.source, self.count, self.keep = read, source, count, keep
        self.stamp = stamp(source)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Row]:
        if stamp(self.source) != self.stamp:  # rows checked are the rows used
            raise DataError([Problem(self.source, "", "the file changed while fasttune was using it; run again")])
        for row in self.read(self.keep):
            if isinstance(row, Problem):
                raise DataError([row])
            yield row

    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        if isinstance(index, slice):
            return list(islice(self, index.start, index.stop, index.step))
        found = next(islice(self, index, None), None) if index >= 0 else None
        if found is None:
            raise IndexError(f"{self.source}: no row {index} (rows are counted from the start)")
        return found

    def select(self, keep: bytearray) -> Rows:
        """The rows whose positions `keep` marks."""
        return Rows(self.read, self.source, sum(keep), keep)


def stamp(source: str) -> tuple[int, int] | None:
    """A local file's size and modification time (None for a hub dataset)."""
    path = Path(source)
    if not path.is_file():
        return None
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def load_rows(path: str, split: str = "train",
              check_row: Callable[[dict], list[tuple[str, str]]] = lambda row: []) -> Rows:
    """The rows of a local .jsonl/.json/.csv/.parquet file, or of a hub dataset's `split`, each checked
    (text, then `check_row`). Raises DataError naming file, line and field of every problem."""
    read = reader(path, split)
    return Rows(read, path, check_rows(read(None), check_row, path))


def load_splits(data, check_row, seed: int) -> tuple[Rows, Rows]:
    """The (train, eval) rows a recipe's `data` section names, every row checked with the task's
    `check_row`. Raises DataError naming file, line and field."""
    rows = load_rows(data.path, data.split, check_row)
    if isinstance(data.eval, str):
        return rows, load_rows(data.eval, "train", check_row)
    return split_rows(rows, float(data.eval), seed)


def split_rows(rows: Rows, fraction: float, seed: int) -> tuple[Rows, Rows]:
    """A reproducible (train, eval) split holding out `fraction` of the rows (at least one when > 0)."""
    if fraction <= 0:
        return rows, rows.select(bytearray(len(rows)))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(rows) * fraction))
    if n_eval >= len(rows):
        message = f"{len(rows)} rows are too few to hold out {fraction:.0%} for eval"
        raise DataError([Problem(rows.source, "", message)])
    held = bytearray(len(rows))
    for i in order[:n_eval]:
        held[i] = 1
    return rows.select(held.translate(bytes([1, 0]) + bytes(254))), rows.select(held)
