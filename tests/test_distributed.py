"""Several processes without starting any: which engine a launcher asked for, what the Unsloth backend
accepts under it, and a recipe's train.accelerate_config turning `fasttune run` into `accelerate launch`.
(tests/test_e2e_distributed.py trains with two real processes.)"""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from fasttune import backends, distributed
from fasttune.cli import main
from fasttune.errors import ConfigError

# What `accelerate launch` exports for each engine (accelerate/utils/launch.py), and torchrun alone
LAUNCHES = {
    "DDP": {},
    "FSDP1": {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"},
    "FSDP2": {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"},
    "DeepSpeed": {"ACCELERATE_USE_DEEPSPEED": "true"},
}


def launch(monkeypatch, variables: dict, world_size: int = 2, rank: int = 1):
    for name in ("ACCELERATE_USE_FSDP", "FSDP_VERSION", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    monkeypatch.setenv("RANK", str(rank))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("engine", LAUNCHES)
def test_the_engine_is_read_from_what_the_launcher_exported(engine, monkeypatch):
    launch(monkeypatch, LAUNCHES[engine])
    assert distributed.engine() == engine and distributed.launched() and not distributed.is_main()
    launch(monkeypatch, LAUNCHES[engine], world_size=1, rank=0)
    assert distributed.engine() == "one process" and distributed.is_main()


@pytest.mark.parametrize("engine", ["FSDP1", "DeepSpeed"])
def test_unsloth_is_refused_outside_ddp_and_fsdp2_with_a_message_naming_the_hf_backend(engine, monkeypatch):
    launch(monkeypatch, LAUNCHES[engine])
    with pytest.raises(ConfigError, match=f"model.backend=unsloth cannot run under {engine}.*Use model.backend=hf"):
        backends.choose("unsloth")
    backend, why = backends.choose("auto")  # auto goes to the backend that runs it
    assert backend.NAME == "hf" and why == f"hf: Unsloth does not run under {engine} (DDP and FSDP2 only)"


def test_weights_digest_changes_with_any_value():
    import torch

    weights = {"b": torch.zeros(3, dtype=torch.bfloat16), "a": torch.arange(4.0)}
    same = {"a": torch.arange(4.0), "b": torch.zeros(3, dtype=torch.bfloat16)}
    assert distributed.weights_sha256(weights) == distributed.weights_sha256(same)
    same["a"][3] = torch.nextafter(torch.tensor(3.0), torch.tensor(4.0))
    assert distributed.weights_sha256(weights) != distributed.weights_sha256(same)


def test_accelerate_config_relaunches_fasttune_run_through_accelerate(monkeypatch, tmp_path, write_recipe):
    config = tmp_path / "ddp.yaml"
    config.write_text("distributed_type: MULTI_GPU\nnum_processes: 2\n")
    recipe = write_recipe("recipes/data/chat_train.jsonl")
    launch(monkeypatch, {}, world_size=1, rank=0)
    monkeypatch.setenv(distributed.LAUNCHED, "")
    started = []

    def execv(executable, argv):  # what replaces this process; nothing after it runs
        started.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(distributed.os, "execv", execv)
    result = CliRunner().invoke(main, ["run", str(recipe), f"train.accelerate_config={config}", "train.lr=1e-4"])
    assert result.exit_code == 0, result.output
    assert started == [[sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
                        "-m", "fasttune.cli", "run", str(recipe), f"train.accelerate_config={config}", "train.lr=1e-4"]]
    assert distributed.os.environ[distributed.LAUNCHED] == "1"  # so the launched processes run, not relaunch


def test_a_missing_accelerate_config_is_refused_before_anything_launches(monkeypatch, write_recipe):
    launch(monkeypatch, {}, world_size=1, rank=0)
    monkeypatch.setenv(distributed.LAUNCHED, "")
    recipe = write_recipe("recipes/data/chat_train.jsonl")
    result = CliRunner().invoke(main, ["run", str(recipe), "train.accelerate_config=nowhere.yaml"])
    assert result.exit_code == 2
    assert "train.accelerate_config: no file nowhere.yaml" in result.output
    assert "accelerate config --config_file nowhere.yaml" in result.output
