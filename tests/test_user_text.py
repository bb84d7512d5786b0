"""User text in what fasttune prints (paths, recipe names, data): every printed command pastes back
into a shell as the argv it names, whatever the path holds (a space, `;`, `$(...)`), and nothing the
user wrote is read as Rich markup (`[/x]` would raise a MarkupError, `[red]` vanish)."""

from __future__ import annotations

import json
import shlex
from types import SimpleNamespace

import pytest

from fasttune import distributed
from fasttune.errors import RunInterrupted, TrainingDiverged
from helpers import invoke

NASTY = "my runs; $(touch pwned)"  # a space, a command separator and a substitution


def test_the_resume_commands_of_a_stopped_run_paste_back_whole(tmp_path):
    from fasttune.interrupts import StopGuard
    from fasttune.run import stopped_early

    run_dir = tmp_path / NASTY / "chat_sft-1"
    saved = run_dir / "checkpoints" / "checkpoint-2"
    saved.mkdir(parents=True)
    (saved / "trainer_state.json").write_text("{}")
    recipe_path = str(tmp_path / NASTY / "chat sft.py")
    command = shlex.join(["fasttune", "run", recipe_path, "train.lr=0.001"])
    recipe, state = SimpleNamespace(train=SimpleNamespace(lr=1e-3)), SimpleNamespace(global_step=3, max_steps=8)

    diverged = StopGuard(print)
    diverged.nonfinite = (3, "loss", float("nan"))
    with pytest.raises(TrainingDiverged) as error:
        stopped_early(diverged, recipe, run_dir, command, state)
    pasted = shlex.split(str(error.value).split("with a lower learning rate: ")[1])
    assert pasted == ["fasttune", "run", recipe_path, "train.lr=0.0001", f"train.resume={saved}"]

    stopped = StopGuard(print)
    stopped.requested = "SIGTERM"
    with pytest.raises(RunInterrupted) as error:
        stopped_early(stopped, recipe, run_dir, command, state)
    pasted = shlex.split(str(error.value).split("Resume with: ")[1])
    assert pasted == ["fasttune", "run", recipe_path, "train.lr=0.001", f"train.resume={run_dir}"]


def test_the_wandb_sync_command_pastes_back_whole(tmp_path):
    import fasttune

    run_dir = tmp_path / NASTY
    offline = run_dir / "wandb" / "offline-run-20260101_000000-abc"
    offline.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({}))
    said = fasttune.Run(run_dir).wandb
    assert said.startswith("offline: ")
    assert shlex.split(said.split("upload with ")[1]) == ["wandb", "sync", str(offline)]


def test_the_accelerate_config_command_pastes_back_whole(tmp_path, write_recipe, monkeypatch):
    monkeypatch.delenv(distributed.LAUNCHED, raising=False)
    config = str(tmp_path / NASTY / "ddp.yaml")
    result = invoke("run", str(write_recipe("data.jsonl")), f"train.accelerate_config={config}")
    assert result.returncode == 2
    assert shlex.split(result.stderr.split("write one with `")[1].split("`")[0]) == \
        ["accelerate", "config", "--config_file", config]


def test_the_recipe_help_usage_line_pastes_back_whole(write_recipe):
    recipe = write_recipe("data.jsonl", name="chat sft; $(touch pwned).py")
    result = invoke("run", str(recipe), "--help")
    assert result.returncode == 0, result.stderr
    usage = result.stdout.splitlines()[0].removeprefix("Usage: ").split(" [KEY=VALUE]")[0]
    assert shlex.split(usage) == ["fasttune", "run", str(recipe)]


@pytest.fixture
def marked_up(tmp_path, write_recipe):
    """A chat recipe named `chat [red]x`, its data in a folder whose path holds `[/x]`."""
    data = tmp_path / "[" / "x]" / "chats.jsonl"
    data.parent.mkdir(parents=True)
    row = {"messages": [{"role": "user", "content": "What is [/x]?"}, {"role": "assistant", "content": "[red]"}]}
    data.write_text("\n".join(json.dumps(row) for _ in range(8)) + "\n")
    return write_recipe(str(data), name="chat [red]x.py"), data


def test_check_prints_names_and_paths_as_written(marked_up):
    recipe, data = marked_up
    result = invoke("check", str(recipe))
    assert result.returncode == 0, result.stderr
    assert "chat [red]x: task chat_sft" in result.stdout and f"data: train {data}" in result.stdout


def test_run_prints_names_and_paths_as_written(marked_up, tmp_path):
    """Up to the run folder: log.runs_dir is a file, refused before any model loads."""
    recipe, data = marked_up
    not_a_folder = tmp_path / "runs-file"
    not_a_folder.write_text("")
    result = invoke("run", str(recipe), f"log.runs_dir={not_a_folder}")
    assert result.returncode == 2 and "log.runs_dir: cannot write run folders" in result.stderr, result.stderr
    assert f"train rows from {data}" in result.stdout
