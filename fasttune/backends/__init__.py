"""Pick the training backend. Unsloth is imported here, first, before anything imports transformers.

Both backends expose the same four functions, so run.py never branches on which one it has:
    load(model_cfg, path, max_seq_length, gradient_checkpointing, seed) -> (peft model, tokenizer)
    for_inference(model), for_training(model)
    NAME
"""

from __future__ import annotations

import sys
from types import ModuleType

from fasttune.config import ConfigError


def choose(name: str) -> tuple[ModuleType, str]:
    """The backend module for `model.backend` and a sentence saying why it was picked."""
    if name in ("auto", "unsloth"):
        from fasttune.backends import unsloth

        error = unsloth.try_import()
        if error is None:
            return unsloth, "unsloth: imported" + (" (requested)" if name == "unsloth" else " (auto picks it when it imports)")
        if name == "unsloth":
            raise ConfigError(f"model.backend=unsloth, but Unsloth does not import: {error}. "
                              "Install it (see README) or use model.backend=hf")
        reason = f"hf: Unsloth does not import ({error})"
    else:
        reason = "hf: requested"
    from fasttune.backends import hf

    return hf, reason


def use_4bit(model_cfg) -> bool:
    """4-bit QLoRA only on CUDA: on CPU bitsandbytes 4-bit trains at about half fp32's speed and its
    LoRA cannot be merged, so the base loads unquantized there (run.py says so)."""
    import torch

    return model_cfg.load_in_4bit and torch.cuda.is_available()


def heavy_modules_loaded() -> list[str]:
    """Libraries Unsloth must precede; if one is already imported, its patches come too late."""
    return [m for m in ("transformers", "trl", "peft") if m in sys.modules]
