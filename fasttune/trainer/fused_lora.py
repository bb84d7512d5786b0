"""LoRA layers on CPU as one autograd function: base matmul, adapter and scale in three matmuls.

peft's LoRA forward is `base(x) + lora_B(lora_A(dropout(x))) * scaling`: on CPU under bf16 autocast
that is a cast of x up to the fp32 adapter and back down, a multiply and an add over the whole
(tokens, out_features) output, and in the backward the same multiply again plus an add of the two
input gradients. Fused here (written by hand because no library fuses LoRA on CPU; Unsloth's fused
kernels are Triton, GPU only):

    forward:  y  = addmm(x @ W.T, x @ A.T, B.T, alpha=scaling)      the scale folded into the GEMM
    backward: gh = (g @ B) * scaling                                (tokens, r): the only multiply
              dA = gh.T @ x,  dB = scaling * g.T @ (x @ A.T)
              dx = addmm(g @ W, gh, A)                             the two paths summed in the GEMM

Results equal peft's to bf16 rounding (tests/test_fused_lora.py holds them to it against fp64); the
measured gain per layer and per step is in benchmarks/README.md.

Only plain LoRA on an unquantized nn.Linear with one active adapter and no dropout is fused;
every other layer (DoRA, dropout, quantized or trainable bases, several adapters) keeps peft's
forward, with peft's input cast skipped as autocast makes it redundant.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import cache


@cache
def lora_linear_function():
    """The autograd function, made on first use: torch stays out of module imports."""
    import torch

    class LoRALinear(torch.autograd.Function):
        """y = x W^T + b + scaling * (x A^T) B^T, everything in the autocast dtype (bf16 in training)."""

        @staticmethod
        def forward(ctx, x, weight, bias, lora_a, lora_b, scaling):
            dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
            flat = x.reshape(-1, x.shape[-1]).to(dtype)
            w, a, b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
            h = flat @ a.t()
            base = flat @ w.t() if bias is None else torch.addmm(bias.to(dtype), flat, w.t())
            y = base.addmm_(h, b.t(), alpha=scaling)  # in place: out-of-place addmm copies `base` first
            ctx.save_for_backward(flat, w, a, b, h)
            ctx.scaling, ctx.x_shape, ctx.x_dtype = scaling, x.shape, x.dtype
            ctx.param_dtypes = (lora_a.dtype, lora_b.dtype)
            return y.view(*x.shape[:-1], w.shape[0])

        @staticmethod
        def backward(ctx, grad):
            flat, w, a, b, h = ctx.saved_tensors
            g = grad.reshape(-1, grad.shape[-1]).to(flat.dtype)
            gh = (g @ b).mul_(ctx.scaling)
            grad_x = grad_a = grad_b = None
            if ctx.needs_input_grad[0]:
                grad_x = (g @ w).addmm_(gh, a).view(ctx.x_shape).to(ctx.x_dtype)
            if ctx.needs_input_grad[3]:
                grad_a = (gh.t() @ flat).to(ctx.param_dtypes[0])
            if ctx.needs_input_grad[4]:
                grad_b = (g.t() @ h).mul_(ctx.scaling).to(ctx.param_dtypes[1])
            return grad_x, None, None, grad_a, grad_b, None

    return LoRALinear


def fusable(module) -> bool:
    """True for a peft LoRA Linear this module computes exactly as peft does."""
    import torch
    from peft.tuners.lora.layer import Linear

    if not isinstance(module, Linear) or "forward" in vars(module):  # e.g. accelerate's offload hooks
        return False
    base = module.base_layer
    if type(base) is not torch.nn.Linear or base.weight.requires_grad \
            or (base.bias is not None and base.bias.requires_grad):
        return False
    if module.merged or module.disable_adapters or len(module.active_adapters) != 1:
        return False
    name = module.active_adapters[0]
    return (name in module.lora_A and name not in module.lora_variant
            and isinstance(module.lora_dropout[name], torch.nn.Identity)
            and module.lora_B[name].bias is None and not getattr(module, "fan_in_fan_out", False))


def _fused_forward(module, x, *args, **kwargs):
    # peft's own forward for what it alone knows: extra arguments (adapter_names for mixed batches), and
    # adapters switched off inside the step (a reference model computed with `disable_adapter()`)
    if args or kwargs or module.disable_adapters or module.merged:
        return type(module).forward(module, x, *args, **kwargs)
    name = module.active_adapters[0]
    base = module.base_layer
    lora_a, lora_b = module.lora_A[name].weight, module.lora_B[name].weight
    return lora_linear_function().apply(x, base.weight, base.bias, lora_a, lora_b, float(module.scaling[name]))


class FusedLoRA:
    """The step trick: applies to supervised fine-tuning steps of a LoRA model on CPU under bf16 autocast
    (Unsloth's CPU path loads bf16 weights there). GRPO and DPO steps keep peft's forward: their steps
    generate or switch the adapter off inside, and no test holds the fused layers to peft's there. A
    fully fine-tuned model has no LoRA layer to fuse."""

    name = "fused LoRA"

    def applies(self, trainer) -> bool:
        import torch
        from trl import SFTTrainer

        return (not torch.cuda.is_available() and trainer.args.bf16 and isinstance(trainer, SFTTrainer)
                and hasattr(trainer.model, "peft_config"))

    def context(self, trainer):
        return fused_lora_linears(trainer.model)


@contextmanager
def fused_lora_linears(model):
    """Inside: every fusable LoRA layer of `model` runs `lora_linear_function()`, the others skip peft's input
    cast. Meant for the Trainer's bf16-autocast steps on CPU; outside, the model is as it was."""
    from functools import partial

    from peft.helpers import disable_input_dtype_casting

    fused = [m for m in model.modules() if fusable(m)]
    for module in fused:
        module.forward = partial(_fused_forward, module)
    try:
        with disable_input_dtype_casting(model):
            yield len(fused)
    finally:
        for module in fused:
            del module.forward
