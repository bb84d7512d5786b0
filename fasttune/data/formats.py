"""One reader per data file type, each yielding a file's rows one at a time, every row naming its place.

A reader reads its file afresh on every pass and yields `Row`s (or a `Problem` for what cannot be a
row), so no pass holds a file's rows: checking 1M rows keeps one row in memory at a time
(benchmarks/README.md#data-memory). `keep`, when given, is a mask over row numbers (the eval split):
rows it leaves out are skipped, and JSON Lines rows are then not even parsed.

JSON Lines, JSON and CSV are parsed with the standard library so that an error names the line:
CSV through `csv`, which also keeps a quoted cell with newlines in one row named by the line it
starts on, and reads every cell as the text it holds (a label `1` stays the label "1", `NA` stays
"NA"; an empty cell is a missing value, None). Lines are read at most MAX_LINE_BYTES at a time, so a
file that is one endless line is refused without being read into memory. Parquet is read a batch of
rows at a time through pyarrow; a hub dataset through `datasets` (memory-mapped Arrow).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fasttune.data.validate import TOO_DEEP
from fasttune.errors import DataError, Problem

MAX_LINE_BYTES = 1_000_000  # far beyond any training example; beyond it a file is broken, not long
CHUNK = 1 << 20  # how much of an over-long line is read at a time while skipping it
PARQUET_BATCH = 1024


@dataclass
class Row:
    where: str  # "data.jsonl:12", "data.json record 3", "data.parquet row 7"
    data: dict


Reader = Callable[[bytearray | None], Iterator[Row | Problem]]


def lines(p: Path) -> Iterator[tuple[int, bytes | int]]:
    """(line number, its bytes without the newline), or (line number, its length) for a line over
    MAX_LINE_BYTES, which is skipped a chunk at a time rather than read whole."""
    with p.open("rb") as f:
        number = 0
        while raw := f.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n"):
                yield number, raw.rstrip(b"\r\n").removeprefix(b"\xef\xbb\xbf" if number == 1 else b"")
                continue
            length = len(raw)
            while raw and not raw.endswith(b"\n"):
                raw = f.readline(CHUNK)
                length += len(raw.rstrip(b"\r\n"))
            yield number, length


def too_long(where: str, length: int) -> Problem:
    return Problem(where, "", f"the line is {length:,} bytes long (the limit is {MAX_LINE_BYTES:,}): rows run "
                              "together, or a field holds a file")


def nul_bytes(where: str) -> Problem:
    return Problem(where, "", "holds NUL bytes: binary data or UTF-16 text, not UTF-8; save the file as UTF-8")


def not_utf8(where: str, raw: bytes, error: UnicodeDecodeError) -> Problem:
    if b"\x00" in raw:  # UTF-16 (a spreadsheet's "Unicode text") decodes as bytes with NULs between them
        return nul_bytes(where)
    return Problem(where, "", f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
                              "save the file as UTF-8")


def jsonl(p: Path) -> Reader:
    def read(keep: bytearray | None = None) -> Iterator[Row | Problem]:
        index = -1
        for number, raw in lines(p):
            where = f"{p}:{number}"
            if isinstance(raw, int):
                index += 1
                yield too_long(where, raw)
                continue
            if not raw.strip():
                continue
            index += 1
            if keep is not None and not keep[index]:
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as error:
                yield not_utf8(where, raw, error)
                continue
            except json.JSONDecodeError as error:
                yield nul_bytes(where) if b"\x00" in raw else \
                    Problem(where, "", f"not valid JSON ({error.msg} at column {error.colno})")
                continue
            except RecursionError:
                yield Problem(where, "", TOO_DEEP)
                continue
            if isinstance(value, dict):
                yield Row(where, value)
            else:
                yield Problem(where, "", f"each line must be a JSON object, got {type(value).__name__}")

    return read


def json_list(p: Path) -> Reader:
    """A .json file holds one value, so it is parsed whole, once: for data that does not fit in
    memory, JSON Lines reads a row at a time."""
    items: list = []

    def parse() -> Problem | None:
        raw = p.read_bytes()
        try:
            value = json.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as error:
            line = raw.count(b"\n", 0, error.start) + 1
            return Problem(f"{p}:{line}", "", f"not UTF-8 text (byte 0x{raw[error.start]:02x}); save the file as UTF-8")
        except json.JSONDecodeError as error:
            return Problem(f"{p}:{error.lineno}", "", f"not valid JSON ({error.msg})")
        except RecursionError:
            return Problem(str(p), "", TOO_DEEP)
        if isinstance(value, dict) and isinstance(value.get("data"), list):
            value = value["data"]
        if not isinstance(value, list):
            return Problem(str(p), "", "a .json data file must hold a list of objects (or {\"data\": [...]})")
        items.extend(value)
        return None

    def read(keep: bytearray | None = None) -> Iterator[Row | Problem]:
        if not items and (problem := parse()):
            yield problem
            return
        for i, item in enumerate(items):
            if keep is None or keep[i]:
                yield Row(f"{p} record {i}", item) if isinstance(item, dict) else \
                    Problem(f"{p} record {i}", "", f"must be a JSON object, got {type(item).__name__}")

    return read


def csv_rows(p: Path) -> Reader:
    def read(keep: bytearray | None = None) -> Iterator[Row | Problem]:
        problems: list[Problem] = []

        def text() -> Iterator[str]:  # lines for csv, each problem kept; a line too long ends the file
            for number, raw in lines(p):
                if isinstance(raw, int):
                    problems.append(too_long(f"{p}:{number}", raw))
                    return
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    problems.append(not_utf8(f"{p}:{number}", raw, error))
                    line = raw.decode("utf-8", errors="replace")
                yield line + "\n"

        csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))  # the stdlib's is 131,072 characters
        records = csv.reader(text())
        header, end, index = None, 0, -1
        try:
            for cells in records:
                start, end = end + 1, records.line_num
                yield from problems
                problems.clear()
                if not cells:
                    continue
                if header is None:
                    header = cells
                    twice = sorted({name for name in header if header.count(name) > 1})
                    if twice:
                        yield Problem(f"{p}:{start}", "", f"the header names {', '.join(map(repr, twice))} twice")
                        return
                    continue
                index += 1
                if keep is not None and not keep[index]:
                    continue
                if len(cells) != len(header):
                    yield Problem(f"{p}:{start}", "", f"has {len(cells)} cells, the header has {len(header)}")
                    continue
                yield Row(f"{p}:{start}", {name: cell if cell != "" else None for name, cell in zip(header, cells)})
        except csv.Error as error:
            problems.append(Problem(f"{p}:{records.line_num}", "", f"not valid CSV ({error})"))
        yield from problems

    return read


def parquet(p: Path) -> Reader:
    def read(keep: bytearray | None = None) -> Iterator[Row | Problem]:
        import pyarrow.parquet as pq

        index = 0
        try:
            for batch in pq.ParquetFile(p).iter_batches(batch_size=PARQUET_BATCH):
                for item in batch.to_pylist():
                    if keep is None or keep[index]:
                        yield Row(f"{p} row {index}", item)
                    index += 1
        except Exception as error:  # pyarrow's ArrowInvalid / OSError for a file that is not (all) Parquet
            where = f"{p} row {index}" if index else str(p)
            yield Problem(where, "", f"not a readable Parquet file: {type(error).__name__}: {error}")

    return read


def hub(name: str, split: str) -> Reader:
    table = []

    def read(keep: bytearray | None = None) -> Iterator[Row | Problem]:
        if not table:
            import datasets

            try:
                table.append(datasets.load_dataset(name, split=split))
            except Exception as error:  # offline, unknown id, gated: say which, without the traceback
                yield Problem(name, "", "could not load (is it a hub dataset id, and is the network reachable?): "
                                        f"{type(error).__name__}: {error}")
                return
        for i, item in enumerate(table[0]):
            if keep is None or keep[i]:
                yield Row(f"{name} row {i}", dict(item))

    return read


FILES = {".jsonl": jsonl, ".json": json_list, ".csv": csv_rows, ".parquet": parquet}


def reader(path: str, split: str = "train") -> Reader:
    """The reader for a local .jsonl/.json/.csv/.parquet file, or for a hub dataset's `split`."""
    p = Path(path)
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix not in FILES:
            raise DataError([Problem(path, "", f"unsupported file type {suffix!r}; use .jsonl, .json, .csv or "
                                               ".parquet")])
        return FILES[suffix](p)
    if p.suffix.lower() in FILES or p.exists() or path.startswith((".", "/")):
        raise DataError([Problem(path, "", "no such file")])
    return hub(path, split)
