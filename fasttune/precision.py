"""The floating-point type training computes in on a GPU: one rule, asked by every place that picks one.

bf16 only where the GPU has it natively: compute capability 8.0 and newer (Ampere, Ada, Hopper,
Blackwell). `torch.cuda.is_bf16_supported()` is not the test: it also says True on a T4 (7.5), which
emulates bf16 slowly. Older GPUs train in fp16 with loss scaling (the Trainer's `fp16=True`; the
LoRA weights themselves stay fp32, so their gradients can be unscaled). On CPU the backend chooses
(the Unsloth fallback loads bf16 weights where the CPU has AVX512-BF16, the hf backend fp32), and
autocast follows the weights it loaded.

A full fine-tuning (model.full_finetune) keeps float32 weights on every device unless model.dtype says
otherwise, and computes in bf16 or fp16 autocast where the device has it: AdamW's update is about the
learning rate, and a bf16 weight (8 bits of mantissa) rounds away any change below ~1/256 of itself,
so 16-bit weights barely learn at full fine-tuning's usual rates (benchmarks/README.md, Training variants).
"""

from __future__ import annotations

from pathlib import Path

BF16_CAPABILITY = (8, 0)


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def native_bf16() -> bool:
    """True on a GPU of compute capability 8.0 or newer; False on older GPUs and without one."""
    import torch

    return cuda() and tuple(torch.cuda.get_device_capability()) >= BF16_CAPABILITY


def gpu_dtype():
    """The weights' and autocast's dtype on this machine's GPU: torch.bfloat16 where it is native, else float16."""
    import torch

    return torch.bfloat16 if native_bf16() else torch.float16


def describe() -> str:
    """One line for the console: the GPU's capability and the dtype that follows from it."""
    import torch

    if not cuda():
        return "no GPU: the backend's CPU dtype"
    major, minor = torch.cuda.get_device_capability()
    name = "bf16" if native_bf16() else "fp16 with loss scaling (no native bf16 below capability 8.0)"
    return f"{torch.cuda.get_device_name()} (capability {major}.{minor}): {name}"


def weights_dtype(model_cfg):
    """The dtype a backend loads the weights in: model.dtype when set; float32 for a full fine-tuning (the
    module docstring says why); on a GPU `gpu_dtype()`; None on CPU, where the backend chooses."""
    import torch

    if model_cfg.dtype != "auto":
        return getattr(torch, model_cfg.dtype)
    if model_cfg.full_finetune:
        return torch.float32
    return gpu_dtype() if cuda() else None


def cpu_info() -> dict:
    """{"model": the CPU's name or None, "flags": its feature flags} from /proc/cpuinfo (empty elsewhere)."""
    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "flags": flags}


def cpu_native_bf16() -> bool:
    """True when the CPU computes bf16 itself (AVX512-BF16 or AMX-BF16); elsewhere bf16 is emulated, slowly."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_info()["flags"])
