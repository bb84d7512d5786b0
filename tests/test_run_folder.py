"""The run folder contract's own guarantees: nothing half-written under a real name, incomplete
checkpoints never resumed from, unfinished runs refused by everything that reads them."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from fasttune.checkpoints import find_checkpoint, latest_checkpoint, resume_differences
from fasttune.errors import ConfigError, StorageError
from fasttune.run_folder import RunFolder, open_run, write_dir
from helpers import invoke


def test_write_dir_leaves_the_old_folder_when_building_fails(tmp_path):
    target = tmp_path / "adapter"
    write_dir(target, lambda tmp: (tmp.mkdir(), (tmp / "weights").write_text("good")))

    def fails_midway(tmp):
        tmp.mkdir()
        (tmp / "weights").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_dir(target, fails_midway)
    assert (target / "weights").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temporary folder left behind


def test_two_writers_of_one_folder_never_touch_each_others_copy(tmp_path):
    """A second write of the same folder (another export of the run) while the first is half-written:
    each builds under its own temporary name, and the one that finishes last wins whole."""
    target = tmp_path / "adapter"

    def outer(tmp):
        tmp.mkdir()
        (tmp / "weights").write_text("outer")
        write_dir(target, lambda inner: (inner.mkdir(), (inner / "weights").write_text("inner")))
        (tmp / "tokenizer").write_text("outer")

    write_dir(target, outer)
    assert {p.name: p.read_text() for p in target.iterdir()} == {"weights": "outer", "tokenizer": "outer"}
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_an_interrupt_while_replacing_a_folder_leaves_the_old_one(tmp_path, monkeypatch):
    """Ctrl-C as the new copy is renamed in: the old copy, renamed aside first, comes back."""
    target = tmp_path / "merged"
    write_dir(target, lambda tmp: (tmp.mkdir(), (tmp / "weights").write_text("good")))
    rename = Path.rename

    def interrupted(self, to):
        if self.name.endswith(".tmp"):
            raise KeyboardInterrupt
        return rename(self, to)

    monkeypatch.setattr(Path, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_dir(target, lambda tmp: (tmp.mkdir(), (tmp / "weights").write_text("new")))
    assert (target / "weights").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]


def test_an_incomplete_checkpoint_is_never_resumed_from(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for step, complete in ((2, True), (4, True), (6, False)):  # 6: killed while saving, trainer_state.json not yet written
        folder = checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_text("x")
        if complete:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    assert latest_checkpoint(tmp_path) == checkpoints / "checkpoint-4" == find_checkpoint(str(tmp_path))
    with pytest.raises(ConfigError, match="neither a checkpoint folder nor a run folder with checkpoints"):
        find_checkpoint(str(tmp_path / "elsewhere"))


def test_only_a_finished_run_opens(tmp_path):
    run = RunFolder.create(str(tmp_path), "chat")
    with pytest.raises(ConfigError, match="not a run folder"):
        open_run(run.path)
    (run.path / "config.json").write_text(json.dumps({"model": {"name": "m"}, "task": {"type": "ChatSFT"}}))
    run.status("running")
    with pytest.raises(ConfigError, match="did not finish \\(status: running\\)"):
        open_run(run.path)
    run.status("finished")
    with pytest.raises(ConfigError, match="adapter/ folder is missing"):
        open_run(run.path)
    (run.path / "adapter").mkdir()
    finished = open_run(run.path)
    assert finished.task_class().name == "chat_sft" and finished.held_out() is None


@pytest.mark.parametrize("where", ["override", "recipe"])
@pytest.mark.parametrize("name", ["../../escaped", "ABSOLUTE", "sub\\escaped"])
def test_a_run_name_cannot_put_the_run_outside_the_runs_folder(tmp_path, name, where):
    """Refused with the recipe's other checks, before any data is read or folder made (the data file
    does not exist: the name is the first thing said)."""
    name = str(tmp_path / "escaped") if name == "ABSOLUTE" else name
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    recipe = work / "recipe.py"
    recipe.write_text("from fasttune import Data, Recipe, tasks\n"
                      f"recipe = Recipe(task=tasks.ChatSFT(), data=Data('missing.jsonl')"
                      f"{f', name={name!r}' if where == 'recipe' else ''})\n")
    override = [f"name={name}"] if where == "override" else []
    result = invoke("run", str(recipe), *override, f"log.runs_dir={work / 'runs'}")
    assert result.returncode == 2 and f"name: {name!r} is not a plain name" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "recipe.py"]
    with pytest.raises(ConfigError, match="not a plain name"):
        RunFolder.create(str(work / "runs"), name)


def full_disk(monkeypatch):
    """No room for a new file (write_json's temporary copy); files that exist can still be rewritten."""
    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", no_space)


def test_a_run_that_fails_on_a_full_disk_is_still_marked_failed(tmp_path, monkeypatch):
    run = RunFolder.create(str(tmp_path), "chat")
    run.status("running")
    full_disk(monkeypatch)
    run.fail(StorageError("metrics.jsonl: could not append the step 4 record (No space left on device)"))
    status = json.loads((run.path / "status.json").read_text())
    assert status["status"] == "failed" and status["error"].startswith("StorageError: metrics.jsonl: could not")
    assert "traceback" not in status  # the short record that fits where the old one was


def test_a_step_that_fails_on_a_full_disk_is_still_recorded(tmp_path, monkeypatch):
    run = RunFolder.create(str(tmp_path), "chat")
    run.status("finished")
    full_disk(monkeypatch)
    run.step("export", "failed", OSError(errno.ENOSPC, "No space left on device"))
    status = json.loads((run.path / "status.json").read_text())
    assert status["status"] == "finished" and status["export"] == "failed" and "No space" in status["export_error"]


def test_a_status_json_that_cannot_be_written_at_all_leaves_the_error_the_one_raised(tmp_path, capsys):
    run = RunFolder.create(str(tmp_path), "chat")
    (run.path / "status.json").mkdir()  # can be neither replaced nor rewritten
    run.fail(OSError(errno.ENOSPC, "No space left on device"))  # returns: the caller raises the run's own error
    warning = capsys.readouterr().err
    assert "status.json could not be updated" in warning and "OSError: [Errno 28] No space left" in warning


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def fake_checkpoint(tmp_path, step: int = 4, model: str = "smollm2-135m-instruct", task: str = "ChatSFT",
                    r: int = 16, alpha: int = 32, targets=tuple(LORA_TARGETS)):
    """A run folder as a chat_sft run with `train.save_steps` leaves it, JSON files only (no weights):
    config.json (the chat recipe, changed as asked), checkpoint-N's trainer_state.json and adapter_config.json."""
    from fasttune.recipe import load_recipe
    from helpers import ROOT

    config = load_recipe(ROOT / "recipes" / "chat_sft.py").to_dict()
    config["model"]["name"], config["task"]["type"] = model, task
    run = tmp_path / "old-run"
    checkpoint = run / "checkpoints" / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config))
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 8,
                                                               "epoch": step / 80, "log_history": []}))
    (checkpoint / "adapter_config.json").write_text(json.dumps({  # as peft writes it: targets in any order
        "r": r, "lora_alpha": alpha, "target_modules": sorted(targets), "modules_to_save": None,
        "base_model_name_or_path": "/somewhere/smollm2-135m-instruct", "peft_type": "LORA"}))
    return run


@pytest.mark.parametrize(("made_with", "overrides", "message"), [
    ({"model": "HuggingFaceTB/SmolLM2-360M-Instruct"}, [],
     "model: the checkpoint trained HuggingFaceTB/SmolLM2-360M-Instruct, this run trains smollm2-135m-instruct"),
    ({"task": "InstructSFT"}, [], "task: the checkpoint trained InstructSFT, this run ChatSFT"),
    ({"r": 8}, [], "model.lora.r: the checkpoint has 8, this run 16"),
    ({}, ["model.lora.alpha=16"], "model.lora.alpha: the checkpoint has 32, this run 16"),
    ({}, ["model.lora.use_dora=true"], "model.lora.use_dora: the checkpoint has False, this run True"),
    ({"targets": ("q_proj", "v_proj")}, [],
     "model.lora.target_modules: the checkpoint has ['q_proj', 'v_proj'], this run ['down_proj', 'gate_proj'"),
    ({"step": 8}, [], "train.max_steps: the checkpoint is at step 8, so max_steps=8 leaves nothing to train"),
    ({"step": 80}, ["train.max_steps=-1"], "train.epochs: the checkpoint has trained 1 epochs, so epochs=1"),
])
def test_a_resume_that_cannot_continue_the_run_is_refused_before_any_model_loads(tmp_path, monkeypatch, made_with,
                                                                                   overrides, message):
    import time

    from fasttune import backends
    from helpers import invoke

    def no_backend(*args):
        raise AssertionError("a backend was chosen: the model would load next")

    monkeypatch.setattr(backends, "choose", no_backend)
    run = fake_checkpoint(tmp_path, **made_with)
    started = time.perf_counter()
    result = invoke("run", "recipes/chat_sft.py", "train.max_steps=8", *overrides, f"train.resume={run}",
                    f"log.runs_dir={tmp_path / 'runs'}", "log.report_to=[]")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{run / 'checkpoints'}" in result.stderr and "cannot continue this run" in result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "Backend:" not in result.stdout
    assert time.perf_counter() - started < 2  # data read and JSON compared; no library, no model
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_checkpoint_of_the_same_run_resumes_and_every_difference_is_named(tmp_path):
    from fasttune.recipe import apply_overrides, load_recipe
    from helpers import ROOT

    recipe = apply_overrides(load_recipe(ROOT / "recipes" / "chat_sft.py"), ["train.max_steps=8"])
    run = fake_checkpoint(tmp_path)
    assert find_checkpoint(str(run), recipe.to_dict()) == run / "checkpoints" / "checkpoint-4"
    other = fake_checkpoint(tmp_path / "other", step=9, task="DPO", r=4)
    assert [d.split(":")[0] for d in resume_differences(other / "checkpoints" / "checkpoint-9", recipe.to_dict())] \
        == ["task", "model.lora.r", "train.max_steps"]
