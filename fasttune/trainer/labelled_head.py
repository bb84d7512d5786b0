"""The LM head on CPU over the labelled positions only.

TRL's trainers compute the loss through a fused LM head (`trl.trainer.utils.add_fused_lm_head`):
log-probabilities of the labels over tiles of the vocabulary, the logits never whole, recomputed in
the backward pass. Where Triton runs (CUDA, XPU) it takes only the positions that carry a label. On
other devices it scores every position and masks the result afterwards, because on a compiled backend
(Neuron, XLA) a count of positions that changes with each batch would recompile the graph. A CPU runs
eagerly and recompiles nothing, and a chat or instruction batch labels only its replies (a fifth to a
half of its tokens): so on CPU, inside the Trainer's steps, this trick makes TRL take the labelled
positions there too. The result is TRL's own code path and the same numbers; the head's work, and
its memory, follow the labelled tokens. On a large vocabulary the head is most of a step (Gemma 3:
262,144 rows of 640): benchmarks/README.md has the figures.

A step trick (fasttune/trainer/tricks.py). tests/test_labelled_head.py holds its loss and gradients
to TRL's scoring of every position.
"""

from __future__ import annotations

from contextlib import contextmanager


class LabelledPositionsHead:
    """The step trick: applies to supervised fine-tuning steps on CPU, where TRL's fused head would score
    every position. GRPO, DPO and KTO steps keep TRL's CPU path: with this trick in GRPO's steps, the
    grpo_math notebook's 2 GSPO steps left LoRA B at zero, twice (they train it without), and no test
    holds those trainers' losses to TRL's every-position scoring yet."""

    name = "labelled-positions LM head"

    def applies(self, trainer) -> bool:
        import torch
        from trl import SFTTrainer

        on_cpu = not torch.cuda.is_available()
        return on_cpu and isinstance(trainer, SFTTrainer) and hasattr(_trl_utils(), "_use_triton")

    def context(self, trainer):
        return labelled_positions_only()


def _trl_utils():
    import trl.trainer.utils

    return trl.trainer.utils


@contextmanager
def labelled_positions_only():
    """Inside: TRL's fused LM head scores only the labelled positions on CPU too (its choice on CUDA)."""
    utils = _trl_utils()
    original = utils._use_triton
    utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        utils._use_triton = original
