"""fasttune's own count of training tokens and GPU memory, the same on every backend.

Why not TRL's `num_tokens` log: Unsloth's CUDA trainers never log it, so tokens/s read 0 on the
main path, and where it is logged it counts padding-free and padded batches differently. Instead
every micro-batch that reaches the trainer's `compute_loss` in training mode is counted here
(fasttune/trainer/build.py calls `TokenCounter.count`):
its non-padding tokens (attention mask, or every token of a padding-free packed row) and the
tokens that carry loss. The task says how to read its batches (`Task.count_tokens`), since SFT
batches and GRPO's generated batches differ.
"""

from __future__ import annotations

from typing import Callable


class TokenCounter:
    """Cumulative (seen, trained) token counts of the training micro-batches of one process
    (`totals()`: of every process)."""

    def __init__(self, count_batch: Callable[[dict], tuple[int, int]]):
        self.count_batch = count_batch
        self.seen = 0
        self.trained = 0

    def count(self, batch: dict) -> None:
        """Add one training micro-batch (fasttune's trainer calls this from compute_loss)."""
        seen, trained = self.count_batch(batch)
        self.seen += seen
        self.trained += trained

    def totals(self) -> tuple[int, int]:
        """(seen, trained) of the whole job: summed over the processes of a multi-process run. Every
        process must call it at the same point (it is a collective)."""
        from fasttune.distributed import total

        seen, trained = total(self.seen, self.trained)
        return seen, trained


def count_lm_batch(batch: dict, ignore_index: int = -100) -> tuple[int, int]:
    """(non-padding tokens, tokens with a loss) of a causal-LM batch: input_ids with an
    attention_mask (padded rows), or without one (packed batches, fasttune's on CPU or TRL's
    padding-free ones on a GPU, have no padding: every token counts), and labels."""
    mask = batch.get("attention_mask")
    seen = int(mask.sum()) if mask is not None else batch["input_ids"].numel()
    labels = batch.get("labels")
    # the first label of a row has no preceding token to predict it from, so it never carries loss
    trained = int((labels[..., 1:] != ignore_index).sum()) if labels is not None else seen
    return seen, trained


def reset_gpu_peak() -> None:
    """Start the training-peak measurement (after loading, so weights-only memory is not the peak)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def gpu_peak_gib() -> float | None:
    """Peak GPU memory allocated by torch since reset_gpu_peak, in GiB (None without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)
