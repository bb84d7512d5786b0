"""metrics.jsonl, written while it is read: every line valid JSON (a NaN loss too), a record never
half-written, a last line still being written left out by every reader, and a full disk during an
append a clear error that ends the run, not a crash that leaves it looking alive."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

import fasttune
from fasttune.errors import StorageError
from fasttune.tracking import make_callback, plain_console, plot_loss, read_metrics


def log(path: Path, step: int, **logs) -> None:
    """What the Trainer's on_log hands fasttune's callback at `step` on rank 0."""
    callback = make_callback(path, plain_console(quiet=True), SimpleNamespace(totals=lambda: (0, 0)))
    callback.on_log(None, SimpleNamespace(global_step=step, max_steps=8, is_world_process_zero=True), None, logs)


def strict(line: str) -> dict:
    """JSON as any other tool reads it: no NaN, no Infinity."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


def test_numbers_that_are_not_finite_are_valid_json_and_read_back_as_floats(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log(path, 1, loss=2.5, grad_norm=1.0)
    log(path, 2, loss=float("nan"), grad_norm=float("inf"))
    lines = path.read_text().splitlines()
    assert [strict(line)["step"] for line in lines] == [1, 2]
    first, second = read_metrics(path)
    assert first["loss"] == 2.5 and math.isnan(second["loss"]) and second["grad_norm"] == math.inf


def test_a_record_still_being_written_is_left_out_by_every_reader(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    path = run_dir / "metrics.jsonl"
    log(path, 1, loss=2.5)
    log(path, 2, loss=2.0)
    with path.open("a") as f:
        f.write('{"step": 3, "lo')  # a crash, or a read in the middle of the append
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    assert [r["step"] for r in fasttune.Run(run_dir).metrics] == [1, 2]
    assert plot_loss(path, run_dir / "loss.png") and (run_dir / "loss.png").stat().st_size > 0


def test_a_full_disk_during_an_append_is_a_clear_error(tmp_path):
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    with pytest.raises(StorageError, match="could not append the step 4 record .No space left on device."):
        log(Path("/dev/full"), 4, loss=1.0)


def test_an_append_cut_short_by_a_full_disk_leaves_no_half_record(tmp_path, monkeypatch):
    from fasttune import tracking

    path = tmp_path / "metrics.jsonl"
    log(path, 1, loss=2.5)
    before = path.read_text()
    write = tracking.os.write

    def half(fd, data):  # the disk fills up midway: half the line lands, then ENOSPC
        return write(fd, data[:len(data) // 2])

    monkeypatch.setattr(tracking.os, "write", half)
    with pytest.raises(StorageError, match="marked failed"):
        log(path, 2, loss=2.0)
    assert path.read_text() == before
