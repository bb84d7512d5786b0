"""The Unsloth backend: FastLanguageModel loading (4-bit QLoRA on CUDA) and LoRA with Unsloth's
gradient checkpointing. The only module that imports `unsloth`.

Unsloth patches transformers, TRL and peft when it is imported, so it has to come before them;
`try_import` is called by `backends.choose` before anything else loads a model. On a machine
without a GPU, Unsloth 2026.10.9 runs its CPU fallback (stock transformers + peft + TRL, with its
own dtype choice, chunked cross-entropy and optimizer defaults; packing off).
"""

from __future__ import annotations

import sys
import warnings

from fasttune.config import EMBEDDINGS
from fasttune.memory import BackendMemory

NAME = "unsloth"
MEMORY = BackendMemory(
    fp32_on_4bit=False,  # embeddings and lm_head stay 16-bit on its QLoRA path
    offloads_checkpoints=True,  # its gradient checkpointing offloads layer inputs to CPU memory
    logit_bytes=2,  # fitted: its chunked cross-entropy keeps the logits in bf16
)


def try_import() -> str | None:
    """Import unsloth; return None on success or the reason it failed."""
    if "unsloth" in sys.modules:  # imported already (a notebook's check, then train): its patches hold
        return None
    late = [m for m in ("transformers", "trl", "peft") if m in sys.modules]
    if late:
        warnings.warn(f"{', '.join(late)} imported before unsloth: Unsloth's patches may not apply", stacklevel=2)
    try:
        import unsloth  # noqa: F401
    except Exception as error:  # ImportError, or Unsloth's own "You need a GPU" NotImplementedError
        return f"{type(error).__name__}: {error}"
    return None


def load(model_cfg, path: str, max_seq_length: int, gradient_checkpointing: bool, seed: int):
    from unsloth import FastLanguageModel

    from fasttune import precision
    from fasttune.backends.quantization import use_4bit

    # 'auto' follows fasttune's rule (precision.py), the same as the hf backend's; for LoRA on CPU
    # Unsloth's fallback picks (bf16 where the CPU has it natively, else fp32)
    dtype = precision.weights_dtype(model_cfg)
    checkpointing = "unsloth" if gradient_checkpointing else False
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=path, max_seq_length=max_seq_length, dtype=dtype, load_in_4bit=use_4bit(model_cfg),
        # full_finetuning: every weight trainable, in `dtype` (float32 unless model.dtype says otherwise)
        full_finetuning=model_cfg.full_finetune, use_gradient_checkpointing=checkpointing,
    )
    # Unsloth sets generation_config.max_length to the context size; since every generate call
    # (fasttune's and TRL's) passes max_new_tokens, transformers then warned "Both `max_new_tokens`
    # and `max_length` seem to have been set" on each one. max_new_tokens decides the length anyway.
    model.generation_config.max_length = None
    if model_cfg.full_finetune:
        return model, tokenizer
    lora = model_cfg.lora
    model = FastLanguageModel.get_peft_model(
        model,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        # Unsloth trains embed_tokens / lm_head in full when they are listed among the targets.
        target_modules=list(lora.target_modules) + (EMBEDDINGS if lora.train_embeddings else []),
        ensure_weight_tying=lora.train_embeddings,  # tied input/output embeddings stay one matrix
        bias="none",
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora,  # accepted by Unsloth, passed on to peft; its fused kernels skip DoRA layers
        use_gradient_checkpointing=checkpointing,
        random_state=seed,
    )
    return model, tokenizer


def for_inference(model) -> None:
    from unsloth import FastLanguageModel

    FastLanguageModel.for_inference(model)


def for_training(model) -> None:
    from unsloth import FastLanguageModel

    FastLanguageModel.for_training(model)


def check_stack(say) -> str | None:
    """Unsloth on CUDA with transformers/trl outside the range it declares loses its memory savings
    (fasttune/profiles.py says how much, and how to install the stack it declares)."""
    import torch

    from fasttune.profiles import warn_unsloth_stack_once

    return warn_unsloth_stack_once(torch.cuda.is_available(), say)


def gpu_path_missing() -> list[str]:
    """Nothing: this backend is the GPU path (the machine's own gaps, env lists beside it)."""
    return []
