"""Models that cannot train as asked are refused from their files alone, before any weight loads and
before a run folder exists (fasttune/plan.py's `check_model`, fasttune/models.py): tiny fake folders
and files, no download."""

from __future__ import annotations

import json

import pytest

from fasttune import models
from helpers import invoke

SMALL = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 49152,
         "max_position_embeddings": 2048, "tie_word_embeddings": True}


def folder(tmp_path, config: dict | None = SMALL, weights: bool = True, name: str = "model"):
    path = tmp_path / name
    path.mkdir()
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    if weights:
        (path / "model.safetensors").write_bytes(b"\0" * 8)  # present is all the check asks
    return path


def gguf(tmp_path, kind: str):
    path = tmp_path / f"{kind}.gguf"
    if kind == "cut_short":  # the embedded model's first 200 KB: its header, stopped in the vocabulary
        with models.shipped_gguf().open("rb") as f:
            path.write_bytes(f.read(200 * 1024))
    else:
        path.write_text("not a model\n")
    return path


def refused(*args: str) -> str:
    result = invoke(*args)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Backend:" not in result.stdout
    return result.stderr


@pytest.mark.parametrize(("make", "message"), [
    (lambda t: folder(t, config=None), "is a folder without config.json, not a Hugging Face model folder"),
    (lambda t: folder(t, weights=False), "has a config.json but no weights (*.safetensors or pytorch_model*.bin)"),
    (lambda t: folder(t, {**SMALL, "model_type": "my_own", "auto_map": {"AutoModelForCausalLM": "m.MyModel"}}),
     "needs its own Python code (config.json's auto_map, model_type 'my_own', which transformers does not know)"),
    (lambda t: folder(t, {**SMALL, "max_position_embeddings": 128}),
     "data.max_seq_length=256 is beyond the context of"),
    (lambda t: gguf(t, "cut_short"), "cut_short.gguf is cut short or damaged (204,800 bytes"),
    (lambda t: gguf(t, "not_gguf"), "not_gguf.gguf is not a GGUF file"),
], ids=["no config", "no weights", "custom code", "beyond the context", "gguf cut short", "not a gguf"])
def test_a_model_that_cannot_train_is_refused_by_run_and_check_before_a_run_folder(tmp_path, make, message):
    model = make(tmp_path)
    for command in ("run", "check"):
        stderr = refused(command, "recipes/chat_sft.py", f"model.name={model}", f"log.runs_dir={tmp_path / 'runs'}")
        assert message in stderr, stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_shards_an_index_names_must_all_be_there(tmp_path):
    model = folder(tmp_path, weights=False)
    (model / "model-00001-of-00002.safetensors").write_bytes(b"\0" * 8)
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    stderr = refused("run", "recipes/chat_sft.py", f"model.name={model}", f"log.runs_dir={tmp_path / 'runs'}")
    assert "lacks 1 of the 2 weight files its model.safetensors.index.json names (first: model-00002" in stderr


def test_custom_code_beside_a_model_type_transformers_knows_is_no_obstacle(tmp_path):
    from fasttune.plan import check_model
    from fasttune.recipe import apply_overrides, load_recipe
    from helpers import ROOT

    model = folder(tmp_path, {**SMALL, "auto_map": {"AutoConfig": "configuration.MyConfig"}})
    check_model(apply_overrides(load_recipe(ROOT / "recipes/chat_sft.py"), [f"model.name={model}"]))


def test_a_broken_gguf_is_named_by_plan_and_chat(tmp_path):
    for kind, message in (("cut_short", "is cut short or damaged"), ("not_gguf", "is not a GGUF file")):
        path = gguf(tmp_path, kind)
        assert f"model.name: {path} {message}" in refused("plan", "recipes/chat_sft.py", f"model.name={path}")
        assert f"chat: {path} {message}" in refused("chat", str(path), "--prompt", "Hi")


def test_an_unreachable_hub_model_is_refused_by_check_and_run_before_a_run_folder(tmp_path, monkeypatch):
    """No network here: the hub is asked for the model's config.json (offline: from the cache only)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for command in ("check", "run"):
        stderr = refused(command, "recipes/chat_sft.py", "model.name=nobody/no-such-model",
                         f"log.runs_dir={tmp_path / 'runs'}")
        assert "could not load model 'nobody/no-such-model'" in stderr and "HF_TOKEN" in stderr, stderr
    assert not (tmp_path / "runs").exists()
