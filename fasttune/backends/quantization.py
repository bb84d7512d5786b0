"""When the frozen base model is loaded in 4 bits (QLoRA): a question both backends and run.py ask."""

from __future__ import annotations


def use_4bit(model_cfg) -> bool:
    """4-bit QLoRA only on CUDA: on CPU bitsandbytes 4-bit trains at about half fp32's speed and its
    LoRA cannot be merged, so the base loads unquantized there (run.py says so)."""
    import torch

    return model_cfg.load_in_4bit and torch.cuda.is_available()
