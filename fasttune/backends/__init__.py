"""Pick the training backend. Unsloth is imported here, first, before anything imports transformers.

A backend is a module (fasttune/backends/unsloth.py, fasttune/backends/hf.py) that satisfies the
`Backend` protocol below. Whatever differs between backends is a question the protocol asks of the
module, so no code outside fasttune/backends/ compares a backend's name (tests/test_architecture.py
checks both modules against the protocol, and the rest of the package for name comparisons). A new
backend is one module here that implements it, plus its place in `choose` and `on_gpu`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Protocol

from fasttune.errors import ConfigError
from fasttune.memory import BackendMemory

NAMES = ("unsloth", "hf")  # the backend modules, by the name `model.backend` gives them


class Backend(Protocol):
    NAME: str
    """'unsloth' or 'hf': what the console, eval.json, status.json and `fasttune plan` record. A run
    that picks up a run folder again (`fasttune eval RUN`) passes it back to `choose`."""

    MEMORY: BackendMemory
    """What this backend's own code adds to a GPU training peak: `fasttune plan` and the `auto` sizes
    estimate with it (fasttune/memory.py)."""

    def load(self, model_cfg, path: str, max_seq_length: int, gradient_checkpointing: bool, seed: int):
        """(peft model with fresh LoRA adapters, tokenizer) for the base model at `path`: what a
        training or evaluation session (fasttune/session.py) trains and measures. With
        `model_cfg.full_finetune` the model itself, every weight trainable, with no LoRA layers."""

    def for_inference(self, model) -> None:
        """Switch the model to generation (eval mode, caches on): the evaluator calls it before it
        generates answers."""

    def for_training(self, model) -> None:
        """Switch it back to training, after those answers."""

    def check_stack(self, say) -> str | None:
        """Whether the installed libraries let this backend work as it should on this machine: a
        warning, said through `say` once per process, or None. `fasttune run` and `fasttune env` call
        it right after `choose`, and env records it."""

    def gpu_path_missing(self) -> list[str]:
        """What this backend lacks of the GPU path (Unsloth's kernels and 4-bit QLoRA), one line each:
        `fasttune env` lists it beside the machine's own gaps."""


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


def named(name: str) -> Backend:
    """The backend module called `name`, without importing Unsloth itself: for questions asked of a
    backend that loads no model in this process (`fasttune plan`)."""
    if name not in NAMES:
        raise ConfigError(f"model.backend: unknown backend {name!r}; valid: auto, {', '.join(NAMES)}")
    return importlib.import_module(f"fasttune.backends.{name}")


def on_gpu(name: str) -> Backend:
    """The backend `choose(name)` picks in one process on a GPU machine, found without importing
    Unsloth: 'auto' is Unsloth when it is installed (`fasttune plan` estimates that backend's memory)."""
    if name == "auto":
        name = "unsloth" if importlib.util.find_spec("unsloth") else "hf"
    return named(name)
