"""Recipe files, command-line overrides and `run --help`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fasttune.cli import main
from fasttune.errors import ConfigError
from fasttune.recipe import all_keys, apply_overrides, describe, load_recipe
from helpers import ROOT

CHAT = ROOT / "recipes" / "chat_sft.py"


def test_shipped_recipe_loads_with_its_name():
    recipe = load_recipe(CHAT)
    assert recipe.name == "chat_sft"
    assert recipe.task.name == "chat_sft"
    assert recipe.model.name == "smollm2-135m-instruct"
    assert recipe.data.path == "recipes/data/chat_train.jsonl"


def test_overrides_are_parsed_to_field_types():
    recipe = apply_overrides(load_recipe(CHAT), [
        "train.lr=1e-4", "model.lora.r=32", "train.gradient_checkpointing=true", "log.report_to=[]",
        "data.eval=0.2", "model.backend=hf", "model.lora.target_modules=q_proj,v_proj",
    ])
    assert recipe.train.lr == 1e-4 and isinstance(recipe.train.lr, float)
    assert recipe.model.lora.r == 32 and isinstance(recipe.model.lora.r, int)
    assert recipe.train.gradient_checkpointing is True
    assert recipe.log.report_to == []
    assert recipe.data.eval == 0.2
    assert recipe.model.backend == "hf"
    assert recipe.model.lora.target_modules == ["q_proj", "v_proj"]
    assert load_recipe(CHAT).train.lr == 5e-4  # the original is untouched


def test_data_eval_takes_a_file_too():
    recipe = apply_overrides(load_recipe(CHAT), ["data.eval=other.jsonl"])
    assert recipe.data.eval == "other.jsonl"


@pytest.mark.parametrize("override, message", [
    ("train.lrr=3", "unknown key 'train.lrr'; valid keys: train.max_steps"),
    ("train.lr=fast", "train.lr: expected float, got 'fast'"),
    ("train.batch_size=2.5", "train.batch_size: expected int"),
    ("train.packing=maybe", "expected one of auto, on, off"),
    ("train.batch_size=0", "train.batch_size must be positive"),
    ("model.lora=8", "'model.lora' is a section; set one of: model.lora.r"),
    ("train.gradient_checkpointing=perhaps", "train.gradient_checkpointing: expected bool | auto, got 'perhaps'"),
    ("log.report_to=tensorboard", "log.report_to knows only 'wandb'"),
    ("trainlr", "must look like section.field=value"),
    ("train.epochs=inf", "train.epochs must be positive and finite, got inf"),
    ("train.epochs=nan", "train.epochs must be positive and finite, got nan"),
    ("train.lr=inf", "train.lr must be positive and finite, got inf"),
    ("train.weight_decay=-0.1", "train.weight_decay must be >= 0 (0: none), got -0.1"),
    ("train.weight_decay=inf", "train.weight_decay must be >= 0"),
])
def test_bad_overrides_say_what_is_valid(override, message):
    with pytest.raises(ConfigError) as error:
        apply_overrides(load_recipe(CHAT), [override])
    assert message in str(error.value)


def test_unknown_key_lists_every_valid_key():
    recipe = load_recipe(CHAT)
    with pytest.raises(ConfigError) as error:
        apply_overrides(recipe, ["nope=1"])
    for key in all_keys(recipe):
        assert key in str(error.value)


def test_recipe_error_names_the_recipe_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("from fasttune import Data, Recipe, Train, tasks\n\n"
                    "recipe = Recipe(task=tasks.ChatSFT(), data=Data('x.jsonl'),\n"
                    "                train=Train(lr=-1))\n")
    with pytest.raises(ConfigError) as error:
        load_recipe(path)
    assert f"{path}:4: train.lr must be positive" in str(error.value)


def test_file_without_recipe_is_refused(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="must define `recipe = Recipe"):
        load_recipe(path)


def test_run_help_lists_every_field_with_its_docstring():
    result = CliRunner().invoke(main, ["run", str(CHAT), "train.lr=1e-3", "--help"])
    assert result.exit_code == 0, result.output
    recipe = apply_overrides(load_recipe(CHAT), ["train.lr=1e-3"])
    for key, _type, value, _default, doc in describe(recipe):
        assert f"{key}: " in result.output
        assert doc.split()[0] in result.output
    assert "train.lr: float = 0.001   (default 0.0002)" in result.output


def test_cli_reports_bad_override_and_exits_2():
    result = CliRunner().invoke(main, ["run", str(CHAT), "train.lr=fast"])
    assert result.exit_code == 2
    assert "train.lr: expected float, got 'fast'" in result.output


def test_every_field_has_a_docstring():
    undocumented = [key for key, *_rest, doc in describe(load_recipe(CHAT)) if not doc]
    assert undocumented == []
