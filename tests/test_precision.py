"""What a GPU computes in, and what `auto` turns on, decided by one rule each. No GPU here: the CUDA
queries are the one thing mocked, with a T4's answers (capability 7.5, and torch saying bf16 is
"supported" because it emulates it) and an A100's (8.0)."""

from __future__ import annotations

import ast
import json

import pytest
import torch

from fasttune import plan, precision
from fasttune.recipe import apply_overrides, load_recipe
from fasttune.trainer.arguments import mixed_precision
from helpers import ROOT, invoke


@pytest.fixture
def gpu(monkeypatch):
    """gpu(capability): torch answers as on a GPU of that compute capability (and says bf16 is supported)."""
    def pretend(capability: tuple[int, int]):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # a T4 says so too

    return pretend


class Weights(torch.nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.embed = torch.nn.Embedding(4, 2, dtype=dtype)

    def get_input_embeddings(self):
        return self.embed


@pytest.mark.parametrize("capability, bf16", [((7, 5), False), ((7, 0), False), ((8, 0), True), ((9, 0), True)])
def test_bf16_only_where_the_gpu_has_it_natively_else_fp16_with_loss_scaling(gpu, capability, bf16):
    gpu(capability)
    assert precision.native_bf16() is bf16
    assert precision.gpu_dtype() == (torch.bfloat16 if bf16 else torch.float16)
    # the Trainer's flags follow the same rule, whatever dtype the weights were loaded in
    assert mixed_precision(Weights(torch.float32)) == {"bf16": bf16, "fp16": not bf16}


class LoRAWeights(Weights):
    peft_config = {"default": None}  # what marks a peft model


@pytest.mark.parametrize("flags, native", [({"avx512_bf16", "avx2"}, True), ({"amx_bf16"}, True), ({"avx2"}, False)])
def test_on_cpu_autocast_follows_the_weights_and_a_full_fine_tuning_takes_bf16_where_the_cpu_has_it(
        monkeypatch, flags, native):
    """LoRA: autocast follows the weights the backend loaded. Every weight in float32 (a full fine-tuning):
    bf16 autocast on a CPU that computes bf16 itself, none where it would be emulated (AVX2 only)."""
    assert not torch.cuda.is_available()
    monkeypatch.setattr(precision, "cpu_info", lambda: {"model": "a CPU", "flags": flags})
    assert precision.cpu_native_bf16() is native
    assert mixed_precision(LoRAWeights(torch.bfloat16)) == {"bf16": True, "fp16": False, "use_cpu": True}
    assert mixed_precision(LoRAWeights(torch.float32)) == {"bf16": False, "fp16": False}
    full = {"bf16": True, "fp16": False, "use_cpu": True} if native else {"bf16": False, "fp16": False}
    assert mixed_precision(Weights(torch.float32)) == full
    assert precision.describe().startswith("no GPU")


@pytest.mark.parametrize("capability", [None, (7, 5), (8, 0)])
def test_a_full_fine_tuning_keeps_float32_weights_on_every_device(gpu, capability):
    from fasttune.config import Model

    if capability:
        gpu(capability)
    full, lora = Model(full_finetune=True, load_in_4bit=False), Model()
    assert precision.weights_dtype(full) == torch.float32  # AdamW's small updates survive: autocast computes
    assert precision.weights_dtype(Model(full_finetune=True, load_in_4bit=False, dtype="bfloat16")) == torch.bfloat16
    assert precision.weights_dtype(lora) == (precision.gpu_dtype() if capability else None)  # None: the backend's


def test_no_module_asks_torch_whether_bf16_is_supported():
    """torch.cuda.is_bf16_supported() is True on a T4: every dtype choice goes through precision.py."""
    for path in (ROOT / "fasttune").rglob("*.py"):
        calls = [n.lineno for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Attribute) and n.attr == "is_bf16_supported"]
        assert not calls, f"{path.relative_to(ROOT)}:{calls[0]} asks torch.cuda.is_bf16_supported()"


def test_gradient_checkpointing_auto_is_on_with_a_gpu_and_off_on_cpu(monkeypatch):
    recipe = load_recipe(ROOT / "recipes/chat_sft.py")
    assert recipe.train.gradient_checkpointing == "auto"  # the shipped recipes leave it to the device
    said = []
    on_cpu = plan.resolve_auto(recipe, longest_row=lambda: 0, say=said.append)
    assert on_cpu.train.gradient_checkpointing is False and "train.gradient_checkpointing=auto: off (CPU)" in said
    monkeypatch.setattr(plan, "detect_gpu", lambda: 16.0)
    on_gpu = plan.resolve_auto(recipe, longest_row=lambda: 0, say=said.append)
    assert on_gpu.train.gradient_checkpointing is True and said[-1] == "train.gradient_checkpointing=auto: on (GPU)"
    fixed = apply_overrides(recipe, ["train.gradient_checkpointing=false"])
    assert plan.resolve_auto(fixed, longest_row=lambda: 0, say=said.append).train.gradient_checkpointing is False


def test_check_reports_what_auto_resolved_to_here():
    result = invoke("check", "recipes/chat_sft.py", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gradient_checkpointing"] is False  # no GPU here


def test_plan_shows_what_auto_means_on_a_gpu_and_counts_it():
    recipe = apply_overrides(load_recipe(ROOT / "recipes/chat_sft.py"),
                             ["model.name=smollm2-135m-instruct", "data.max_seq_length=2048", "train.batch_size=1"])
    auto = plan.report(recipe, 16.0)
    off = plan.report(apply_overrides(recipe, ["train.gradient_checkpointing=false"]), 16.0)
    assert auto["gradient_checkpointing"] is True and auto["gradient_checkpointing_auto"] is True
    assert off["gradient_checkpointing"] is False and not off["gradient_checkpointing_auto"]
    assert auto["cards"][0]["peak_gib"] < off["cards"][0]["peak_gib"]  # checkpointing counted as on
    lines = []
    plan.print_report(auto, lambda text, **kwargs: lines.append(text))
    assert any("gradient checkpointing on (auto: on with a GPU)" in line for line in lines)
    dora = plan.report(apply_overrides(recipe, ["model.lora.use_dora=true"]), 16.0)
    assert auto["not_counted"] == [] and dora["not_counted"] == [plan.DORA_NOTE]  # said, not silently left out
    lines = []
    plan.print_report(dora, lambda text, **kwargs: lines.append(text))
    assert lines[-1] == f"Not in the estimate: {plan.DORA_NOTE}."
