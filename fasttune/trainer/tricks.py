"""Speed tricks inside a training step: what one declares, and the one list the step enters.

A trick changes how the model computes during the Trainer's own training and evaluation steps
(attention over packed rows, fused LoRA layers, the LM head over labelled positions) and nowhere
else: generation and scoring outside the Trainer keep the model as it is. It says when it applies —
device, dtype, backend, the layout of the batches — from the trainer it is asked about, and gives a
context manager the step runs inside.
fasttune's trainer (fasttune/trainer/build.py) asks every trick in TRICKS once, when it is built, and
enters the ones that apply around each training_step and prediction_step. Around the whole step, not
just the loss: the backward recomputes checkpointed forwards, and they must run the same way.

A new trick is a module in fasttune/trainer/ with a class like the ones below, added to TRICKS, with a
test that holds its results to the step without it and its measured gain in benchmarks/README.md.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from fasttune.trainer.fused_lora import FusedLoRA
from fasttune.trainer.labelled_head import LabelledPositionsHead
from fasttune.trainer.packed_attention import PackedRowsAttention


class StepTrick(Protocol):
    name: str
    """Short name, for messages and tests."""

    def applies(self, trainer) -> bool:
        """True when this trick should run in `trainer`'s steps (read its device, args, collator, model)."""

    def context(self, trainer) -> AbstractContextManager:
        """Entered around each of `trainer`'s training and evaluation steps; undoes itself on exit."""


TRICKS: tuple[StepTrick, ...] = (PackedRowsAttention(), FusedLoRA(), LabelledPositionsHead())
"""Every step trick fasttune has, in the order their contexts are entered."""


def applicable(trainer) -> list[StepTrick]:
    """The tricks that apply to `trainer` (asked once, when it is built)."""
    return [trick for trick in TRICKS if trick.applies(trainer)]
