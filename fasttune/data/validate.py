"""Data errors that name the file, the line (or row) and the field, collected before any model loads.

A task checks one row at a time and returns its problems as (field, message) pairs; `check_rows`
gathers them over the whole file, so the user sees every broken row at once (up to a limit) rather
than fixing them one failed run at a time. Before the task's own check, every row's text is checked
for what no task can train on and a tokenizer would only fail on after the model has loaded.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable

from fasttune.errors import DataError, Problem

MAX_DEPTH = 100  # lists and objects inside each other; chat rows with tool calls use about 6
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep (lists or objects inside each other): not a data row"
BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
INVISIBLE = {"Cc", "Cf", "Mn", "Zs", "Zl", "Zp"}
"""Unicode categories that print nothing on their own: controls, format characters (zero-width space
and joiners, direction marks, the BOM), combining marks, spaces."""


def check_rows(rows: Iterable, check_row: Callable[[dict], list[tuple[str, str]]], source: str = "data") -> int:
    """Run the text checks and `check_row` over every `Row` (a reader's `Problem`s are kept as they
    come) and raise one DataError listing all problems found; `source` (the file) is named when there
    are no rows at all. Returns how many rows there are."""
    problems = []
    count = 0
    for row in rows:
        if isinstance(row, Problem):
            problems.append(row)
            continue
        count += 1
        problems += [Problem(row.where, f, m) for f, m in text_problems(row.data) or check_row(row.data)]
    if problems:
        raise DataError(problems)
    if count == 0:
        raise DataError([Problem(source, "", "no rows: the data set is empty")])
    return count


def text_problems(row: dict) -> list[tuple[str, str]]:
    """A NUL character or a lone surrogate (a `\\ud800` escape: half of a character, which no tokenizer
    can encode) in any string of the row, or values nested deeper than MAX_DEPTH."""
    problems, stack = [], [(row, "", 0)]
    while stack:
        value, field, depth = stack.pop()
        if isinstance(value, str):
            bad = BAD_CHARACTER.search(value)
            if bad and bad.group() == "\x00":
                problems.append((field, "holds a NUL character (\\u0000): binary data, not text"))
            elif bad:
                problems.append((field, f"holds a lone surrogate (\\u{ord(bad.group()):04x}), half of a character "
                                        "that no tokenizer can encode: the file was written by a broken encoder"))
        elif isinstance(value, dict | list):
            if depth == MAX_DEPTH:
                return [(field.split(".")[0].split("[")[0], TOO_DEEP)]
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack += reversed([(item, f"{field}[{key}]" if isinstance(value, list) else
                                f"{field}.{key}" if field else str(key), depth + 1) for key, item in items])
    return problems


def blank(text: str) -> bool:
    """Nothing to read: empty, whitespace, or characters that print nothing (a row of zero-width
    spaces passes `str.strip`). Only text that starts with such a character is scanned in full."""
    text = text.strip()
    return not text or (unicodedata.category(text[0]) in INVISIBLE
                        and all(unicodedata.category(c) in INVISIBLE for c in text))


def missing(row: dict, column: str) -> tuple[str, str]:
    """The problem for an absent column, listing what the row does have (the usual typo)."""
    return column, f"missing (this row has: {', '.join(sorted(row)) or 'no fields'})"


def require_text(row: dict, *columns: str) -> list[tuple[str, str]]:
    """Each column present, a string, and not blank (None: JSON's null, or an empty CSV cell): the check
    most tasks start with."""
    problems = []
    for column in columns:
        if column not in row:
            problems.append(missing(row, column))
        elif row[column] is None or isinstance(row[column], str) and blank(row[column]):
            problems.append((column, "is empty"))
        elif not isinstance(row[column], str):
            problems.append((column, f"must be a string, got {type(row[column]).__name__}"))
    return problems
