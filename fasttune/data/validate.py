"""Data errors that name the file, the line (or row) and the field, collected before any model loads.

A task checks one row at a time and returns its problems as (field, message) pairs; `check_rows`
gathers them over the whole file, so the user sees every broken row at once (up to a limit) rather
than fixing them one failed run at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fasttune.errors import DataError, Problem

MAX_DEPTH = 100  # lists and objects inside each other; chat rows with tool calls use about 6
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep (lists or objects inside each other): not a data row"


def check_rows(rows: Iterable, check_row: Callable[[dict], list[tuple[str, str]]], source: str = "data") -> int:
    """Run `check_row` over every `Row` (a reader's `Problem`s are kept as they come) and raise one
    DataError listing all problems found; `source` (the file) is named when there are no rows at all.
    Returns how many rows there are."""
    problems = []
    count = 0
    for row in rows:
        if isinstance(row, Problem):
            problems.append(row)
            continue
        count += 1
        problems += [Problem(row.where, f, m) for f, m in check_row(row.data)]
    if problems:
        raise DataError(problems)
    if count == 0:
        raise DataError([Problem(source, "", "no rows: the data set is empty")])
    return count


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
        elif row[column] is None or isinstance(row[column], str) and not row[column].strip():
            problems.append((column, "is empty"))
        elif not isinstance(row[column], str):
            problems.append((column, f"must be a string, got {type(row[column]).__name__}"))
    return problems
