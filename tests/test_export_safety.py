"""Exports that cannot lose or clobber anything, on a fake finished run folder (an adapter export
needs no model, so these run in-process in well under a second): one export per run at a time,
export.json keeping every export's record, and --force replacing only what fasttune wrote."""

from __future__ import annotations

import json

import pytest
from filelock import FileLock

from fasttune.export.pipeline import LOCK
from helpers import invoke


@pytest.fixture
def run_dir(tmp_path):
    """A finished chat run as `fasttune run` leaves it, with an adapter that is only a few bytes."""
    path = tmp_path / "chat_sft-20260101-000000"
    (path / "adapter").mkdir(parents=True)
    (path / "adapter" / "adapter_model.safetensors").write_text("weights")
    (path / "config.json").write_text(json.dumps({"name": "chat_sft", "model": {"name": "smollm2-135m-instruct"},
                                                  "task": {"type": "ChatSFT"}}))
    (path / "status.json").write_text(json.dumps({"status": "finished", "updated": "2026-01-01T00:00:00"}))
    return path


def test_a_second_export_of_the_same_run_is_refused_while_one_runs(run_dir):
    with FileLock(run_dir / LOCK, timeout=0):  # what a running export holds
        result = invoke("export", str(run_dir), "--to", "adapter")
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"another export of {run_dir} is running" in result.stderr
        assert "run this one again once it has finished" in result.stderr
        assert not (run_dir / "export").exists()
    result = invoke("export", str(run_dir), "--to", "adapter")  # the first is done: this one goes ahead
    assert result.returncode == 0, result.stderr
    assert (run_dir / "export" / "adapter" / "adapter_model.safetensors").read_text() == "weights"


def report(out):
    return json.loads((out / "export.json").read_text())


def test_export_json_keeps_every_exports_record(run_dir, tmp_path):
    """The newest export's records under `exports` (what the command printed), the earlier ones under
    `history`, oldest first, each with its run."""
    out = tmp_path / "out"
    assert invoke("export", str(run_dir), "--to", "adapter", "--out", str(out)).returncode == 0
    first = report(out)["exports"]
    assert [r["format"] for r in first] == ["adapter"] and report(out)["history"] == []
    result = invoke("export", str(run_dir), "--to", "adapter", "--out", str(out), "--force")
    assert result.returncode == 0, result.stderr
    second = report(out)
    assert [r["format"] for r in second["exports"]] == ["adapter"] and second["run"] == str(run_dir)
    assert second["history"] == [{"run": str(run_dir), **first[0]}]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_failed_export_records_the_outputs_it_did_write(run_dir, monkeypatch):
    """The adapter is written, then the merge fails: export.json says the adapter is there (and so
    --force may replace it), not what an earlier export wrote."""
    from fasttune.export import pipeline

    def merge_fails(job):
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(pipeline.WRITERS, "merged", merge_fails)
    with pytest.raises(OSError, match="No space left"):
        invoke("export", str(run_dir), "--to", "adapter", "--to", "merged")
    out = run_dir / "export"
    assert [r["format"] for r in report(out)["exports"]] == ["adapter"]
    assert json.loads((run_dir / "status.json").read_text())["export"] == "failed"
    monkeypatch.undo()
    result = invoke("export", str(run_dir), "--to", "adapter", "--force")
    assert result.returncode == 0, result.stderr


def test_force_replaces_only_what_fasttune_wrote(run_dir, tmp_path):
    out = tmp_path / "shared"
    (out / "adapter").mkdir(parents=True)
    (out / "adapter" / "notes.txt").write_text("someone else's")
    result = invoke("export", str(run_dir), "--to", "adapter", "--out", str(out), "--force")
    assert result.returncode == 2
    assert f"{out / 'adapter'} exists and was not written by fasttune export" in result.stderr
    assert "move it away or export to another --out" in result.stderr
    assert (out / "adapter" / "notes.txt").read_text() == "someone else's"


def test_two_runs_exported_into_one_folder_are_not_exported_at_once(run_dir, tmp_path):
    out = tmp_path / "shared"
    with FileLock(tmp_path / f".shared{LOCK}", timeout=0):  # what an export of another run into it holds
        result = invoke("export", str(run_dir), "--to", "adapter", "--out", str(out))
        assert result.returncode == 2 and f"another export into {out} is running" in result.stderr, result.stderr
        assert not out.exists()
    assert invoke("export", str(run_dir), "--to", "adapter", "--out", str(out)).returncode == 0
    assert (out / "adapter" / "adapter_model.safetensors").read_text() == "weights"


def test_run_files_are_strict_json_and_written_whole(tmp_path, monkeypatch):
    """A NaN figure is the string "NaN" (a bare NaN is not JSON); a write that fails leaves the old file."""
    import os

    from fasttune.run_folder import write_json

    path = tmp_path / "eval.json"
    write_json(path, {"after": {"eval_loss": float("nan"), "rows": [float("inf"), 1.5]}})
    assert json.loads(path.read_text(), parse_constant=pytest.fail) == {
        "after": {"eval_loss": "NaN", "rows": ["Infinity", 1.5]}}

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_json(path, {"after": None})
    assert json.loads(path.read_text())["after"]["eval_loss"] == "NaN" and [p.name for p in tmp_path.iterdir()] == [
        "eval.json"]
