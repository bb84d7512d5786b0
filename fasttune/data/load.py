"""Read training data into rows that remember where they came from (file and line, or row number).

JSON Lines and JSON are parsed here with the standard library rather than `datasets`: Arrow's
schema inference turns a single malformed or oddly typed line into an error that names neither
the line nor the field, and the whole point of validation is to name both. CSV, Parquet and hub
datasets are read through `datasets`, whose columns are already typed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from fasttune.errors import DataError, Problem

DATASETS_FORMATS = {".csv": "csv", ".parquet": "parquet"}
MAX_LINE_CHARS = 1_000_000  # far beyond any training example; beyond it a file is broken, not long


@dataclass
class Row:
    where: str
    data: dict


def load_rows(path: str, split: str = "train") -> list[Row]:
    """Rows of a local .jsonl/.json/.csv/.parquet file, or of a hub dataset's `split`."""
    p = Path(path)
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".jsonl":
            return _read_jsonl(p)
        if suffix == ".json":
            return _read_json(p)
        if suffix == ".csv" and sum(1 for line in p.open("rb") if line.strip()) <= 1:
            raise DataError([Problem(path, "", "no rows: the data set is empty (a header and no data)")])
        if suffix in DATASETS_FORMATS:
            return _read_with_datasets(DATASETS_FORMATS[suffix], str(p), "train", p, header=suffix == ".csv")
        raise DataError([Problem(path, "", f"unsupported file type {suffix!r}; use .jsonl, .json, .csv or .parquet")])
    if p.suffix.lower() in (".jsonl", ".json", *DATASETS_FORMATS) or p.exists() or path.startswith((".", "/")):
        raise DataError([Problem(path, "", "no such file")])
    return _read_with_datasets(path, None, split, path, header=False)


def _read_jsonl(p: Path) -> list[Row]:
    rows, problems = [], []
    with p.open("rb") as f:  # bytes, decoded line by line: a bad byte is reported with its line
        for number, raw in enumerate(f, start=1):
            where = f"{p}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                problems.append(Problem(where, "", f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column "
                                                   f"{error.start + 1}); save the file as UTF-8"))
                continue
            if not line.strip():
                continue
            if len(line) > MAX_LINE_CHARS:
                problems.append(Problem(where, "", f"the line is {len(line):,} characters long (the limit is "
                                                   f"{MAX_LINE_CHARS:,}): rows run together, or a field holds a file"))
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                problems.append(Problem(where, "", f"not valid JSON ({error.msg} at column {error.colno})"))
                continue
            if not isinstance(value, dict):
                problems.append(Problem(where, "", f"each line must be a JSON object, got {type(value).__name__}"))
                continue
            rows.append(Row(where, value))
    if problems:
        raise DataError(problems)
    return rows


def _read_json(p: Path) -> list[Row]:
    raw = p.read_bytes()
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DataError([Problem(f"{p}:{line}", "", f"not UTF-8 text (byte 0x{raw[error.start]:02x}); "
                                                    "save the file as UTF-8")]) from None
    except json.JSONDecodeError as error:
        raise DataError([Problem(f"{p}:{error.lineno}", "", f"not valid JSON ({error.msg})")]) from None
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    if not isinstance(value, list):
        raise DataError([Problem(str(p), "", "a .json data file must hold a list of objects (or {\"data\": [...]})")])
    rows, problems = [], []
    for i, item in enumerate(value):
        where = f"{p} record {i}"
        if isinstance(item, dict):
            rows.append(Row(where, item))
        else:
            problems.append(Problem(where, "", f"must be a JSON object, got {type(item).__name__}"))
    if problems:
        raise DataError(problems)
    return rows


def _read_with_datasets(name: str, data_file: str | None, split: str, label, header: bool) -> list[Row]:
    import datasets

    try:
        kwargs = {"data_files": data_file} if data_file else {}
        table = datasets.load_dataset(name, split=split, **kwargs)
    except Exception as error:  # offline, unknown id, unreadable file: say which, without the traceback
        hint = "" if data_file else " (is it a hub dataset id, and is the network reachable?)"
        raise DataError([Problem(str(label), "", f"could not load{hint}: {type(error).__name__}: {error}")]) from None
    # CSV: the header is line 1, so row i sits on line i + 2 (unless a quoted field spans lines).
    locate = (lambda i: f"{label}:{i + 2}") if header else (lambda i: f"{label} row {i}")
    return [Row(locate(i), dict(item)) for i, item in enumerate(table)]


def load_splits(data, check_row, seed: int) -> tuple[list[Row], list[Row]]:
    """The (train, eval) rows a recipe's `data` section names, every row checked with the task's
    `check_row`. Raises DataError naming file, line and field."""
    from fasttune.data.validate import check_rows

    rows = load_rows(data.path, data.split)
    check_rows(rows, check_row, data.path)
    if isinstance(data.eval, str):
        eval_rows = load_rows(data.eval)
        check_rows(eval_rows, check_row, data.eval)
        return rows, eval_rows
    return split_rows(rows, float(data.eval), seed)


def split_rows(rows: list[Row], fraction: float, seed: int) -> tuple[list[Row], list[Row]]:
    """A reproducible (train, eval) split holding out `fraction` of the rows (at least one when > 0)."""
    if fraction <= 0:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(rows) * fraction))
    if n_eval >= len(rows):
        message = f"{len(rows)} rows are too few to hold out {fraction:.0%} for eval"
        raise DataError([Problem(rows[0].where.split(":")[0], "", message)])
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]
