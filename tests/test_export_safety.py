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
