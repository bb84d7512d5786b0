"""The floating-point type training computes in on a GPU: one rule, asked by every place that picks one.

bf16 only where the GPU has it natively: compute capability 8.0 and newer (Ampere, Ada, Hopper,
Blackwell). `torch.cuda.is_bf16_supported()` is not the test: it also says True on a T4 (7.5), which
emulates bf16 slowly. Older GPUs train in fp16 with loss scaling (the Trainer's `fp16=True`; the
LoRA weights themselves stay fp32, so their gradients can be unscaled). On CPU the backend chooses
(the Unsloth fallback loads bf16 weights where the CPU has AVX512-BF16, the hf backend fp32), and
autocast follows the weights it loaded.
"""

from __future__ import annotations

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
