"""Pick the training backend. Unsloth is imported here, first, before anything imports transformers.

A backend is a module (fasttune/backends/unsloth.py, fasttune/backends/hf.py) that satisfies the
`Backend` protocol below, so run.py never branches on which one it has (tests/test_architecture.py
checks both modules against it).
"""

from __future__ import annotations

from typing import Protocol

from fasttune.errors import ConfigError


class Backend(Protocol):
    NAME: str
    """'unsloth' or 'hf', as eval.json and status.json record it."""

    def load(self, model_cfg, path: str, max_seq_length: int, gradient_checkpointing: bool, seed: int):
        """(peft model with fresh LoRA adapters, tokenizer) for the base model at `path`."""

    def for_inference(self, model) -> None:
        """Switch the model to generation (eval mode, caches on)."""

    def for_training(self, model) -> None:
        """Switch it back to training."""


# What Unsloth 2026.10.9 itself runs with several processes: DDP (its own DDP defaults and per-rank
# device placement) and FSDP2 (unsloth/fsdp2_launch.py). Under FSDP1 it declines its fused LoRA
# kernels, and its launcher refuses DeepSpeed; those go to the hf backend.
UNSLOTH_ENGINES = ("one process", "DDP", "FSDP2")


def choose(name: str) -> tuple[Backend, str]:
    """The backend module for `model.backend` and a sentence saying why it was picked."""
    from fasttune.distributed import engine

    launch = engine()
    if name in ("auto", "unsloth") and launch not in UNSLOTH_ENGINES:
        if name == "unsloth":
            raise ConfigError(f"model.backend=unsloth cannot run under {launch}: with several processes Unsloth "
                              "runs DDP and FSDP2 only. Use model.backend=hf, which runs every accelerate engine "
                              "(DDP, FSDP, DeepSpeed), or an accelerate config for DDP or FSDP2")
        name, forced = "hf", f"hf: Unsloth does not run under {launch} (DDP and FSDP2 only)"
    else:
        forced = None
    if name in ("auto", "unsloth"):
        from fasttune.backends import unsloth

        error = unsloth.try_import()
        if error is None:
            why = " (requested)" if name == "unsloth" else " (auto picks it when it imports)"
            return unsloth, "unsloth: imported" + why
        if name == "unsloth":
            raise ConfigError(f"model.backend=unsloth, but Unsloth does not import: {error}. "
                              "Install it (see docs/install.md) or use model.backend=hf")
        reason = f"hf: Unsloth does not import ({error})"
    else:
        reason = forced or "hf: requested"
    from fasttune.backends import hf

    return hf, reason
