"""The streamed merge (fasttune/export/merged.py) against peft's own merge_and_unload, on a tiny random
Llama saved in several shards: plain LoRA, rsLoRA, DoRA and fully trained tied embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fasttune.export.merged import StreamingMerge, write_configs
from helpers import merge_peak

SETTINGS = {
    "lora": {},
    "rslora": {"use_rslora": True},
    "dora": {"use_dora": True},
    "embeddings": {"modules_to_save": ["embed_tokens", "lm_head"], "ensure_weight_tying": True},
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    import transformers as tf

    folder = tmp_path_factory.mktemp("base")
    config = tf.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(folder, max_shard_size="60KB")
    assert (folder / "model.safetensors.index.json").is_file()  # several shards, as large models come
    return folder


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_the_streamed_merge_equals_peft_merge_and_unload(kind, base, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                                  init_lora_weights=False, **SETTINGS[kind]))
    if kind == "embeddings":  # trained embeddings differ from the base's
        with torch.no_grad():
            peft_model.base_model.model.model.embed_tokens.modules_to_save["default"].weight.add_(0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    expected = peft_model.merge_and_unload().to(torch.float16).state_dict()

    config = AutoConfig.from_pretrained(base)
    plan = StreamingMerge.plan(base, tmp_path / "adapter", config)
    assert not isinstance(plan, str), plan
    out = tmp_path / "merged"
    out.mkdir()
    plan.write(out, torch.float16)
    write_configs(base, config, out, torch.float16, [2])
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float16).state_dict()
    assert merged.keys() == expected.keys()
    changed = 0
    for name, tensor in expected.items():
        assert merged[name].dtype == torch.float16
        assert torch.allclose(merged[name].float(), tensor.float(), atol=2e-3, rtol=1e-3), name
        changed += not torch.equal(merged[name], AutoModelForCausalLM.from_pretrained(base).state_dict()[name].half()) \
            if name.endswith(("q_proj.weight", "embed_tokens.weight")) else 0
    assert changed > 0  # the adapter did something to compare
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [2]
    assert json.loads((out / "model.safetensors.index.json").read_text())["weight_map"].keys() == \
        json.loads((base / "model.safetensors.index.json").read_text())["weight_map"].keys()


def test_an_adapter_it_does_not_handle_is_named(base, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    get_peft_model(model, LoraConfig(r=4, target_modules=["embed_tokens", "q_proj"])).save_pretrained(tmp_path)
    reason = StreamingMerge.plan(base, tmp_path, AutoConfig.from_pretrained(base))
    assert isinstance(reason, str) and "lora_embedding_A" in reason


def test_a_large_tensor_is_read_a_slice_at_a_time_and_whole_again(tmp_path):
    from safetensors.torch import save_file

    from fasttune.export.merged import header, read_rows

    tensor = torch.randn(1000, 48).to(torch.bfloat16)
    save_file({"a": torch.ones(3), "big": tensor}, tmp_path / "t.safetensors")
    entries, start = header(tmp_path / "t.safetensors")
    with open(tmp_path / "t.safetensors", "rb") as source:
        pieces = list(read_rows(source, start, entries["big"], chunk=10_000))
    assert len(pieces) > 5 and torch.equal(torch.cat(pieces), tensor)


@pytest.mark.e2e
def test_merging_gemma_needs_far_less_ram_than_its_float32_weights(tmp_path):
    """Gemma 3 270M's checkpoint is one 1.07 GB float32 shard. The merge's peak resident set, in a
    process of its own, stays within that shard plus 1 GiB, and below the imports plus one float32
    copy of the weights, the least the whole-model merge holds (it measured 2.3 GB here)."""
    from peft import LoraConfig
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from fasttune import models
    from fasttune.export.merged import header

    base = Path(models.resolve("gemma3-270m"))
    targets = ("q_proj", "v_proj", "gate_proj", "down_proj")
    tensors, _ = header(base / "model.safetensors")  # an r-16 adapter of the checkpoint's shapes, no model loaded
    lora = {}
    for name, entry in tensors.items():
        if name.endswith(".weight") and name.split(".")[-2] in targets:
            out, fan_in = entry["shape"]
            key = "base_model.model." + name.removesuffix(".weight")
            lora[f"{key}.lora_A.weight"], lora[f"{key}.lora_B.weight"] = torch.randn(16, fan_in), torch.randn(out, 16)
    LoraConfig(r=16, lora_alpha=16, target_modules=list(targets)).save_pretrained(tmp_path / "adapter")
    save_file(lora, tmp_path / "adapter" / "adapter_model.safetensors")
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path / "adapter")
    shard = (base / "model.safetensors").stat().st_size
    imports, peak = merge_peak(base, tmp_path / "adapter", tmp_path / "merged")
    print(f"shard {shard / 2**20:.0f} MiB, imports {imports / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB")
    assert peak <= shard + 2**30
    assert peak < imports + shard
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["dtype"] == "float16"
