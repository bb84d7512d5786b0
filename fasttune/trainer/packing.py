"""Packed batches for CPU training: whole examples laid end to end, each attending only to itself.

Why pack on CPU: a CPU multiplies a tall matrix at a higher rate than a short one, so a step over
~1000 tokens of whole examples does more work per second than four chat rows of ~63 tokens, and no
compute goes to padding (figures: benchmarks/README.md). Why fasttune does it and not TRL: Unsloth's
CPU fallback turns TRL's `packing` and `padding_free` off (PyTorch has no CPU kernel that keeps
packed examples apart cheaply; fasttune/trainer/packed_attention.py is fasttune's).

The examples are first bin-packed into rows of at most `max_seq_length` tokens by TRL's
`pack_dataset`, so a step of `batch_size` rows keeps the token budget a recipe author reads; the
collator then lays a batch's rows end to end as one row with no padding. What keeps the examples
apart is the position ids, which restart at 0 at every example: rotary positions restart with them,
so each example sees the positions it would see alone, and the attention reads the examples' bounds
from them. The batch says `use_cache=False`, which transformers needs to build its own
block-diagonal mask from position ids (`tests/test_packed_rows_cpu.py` checks both attentions
against each example run alone).
"""

from __future__ import annotations

from dataclasses import dataclass

from fasttune.chat_template import IGNORE


def pack_rows(dataset, max_length: int):
    """Bin-pack tokenized examples (input_ids, labels) into rows of at most max_length tokens, by
    TRL's best-fit-decreasing `pack_dataset`; each row keeps `seq_lengths`, its examples' lengths.

    Examples of one token are left out: a row's first token is never predicted, so they carry no loss."""
    from trl.data_utils import pack_dataset

    columns = dataset.select_columns(["input_ids", "labels"])
    return pack_dataset(columns.filter(lambda row: len(row["input_ids"]) > 1), max_length, strategy="bfd")


def pack_documents(dataset, max_length: int):
    """Continued pre-training's rows: tokenized documents end to end, cut into rows of exactly
    max_length tokens (the last one shorter), by TRL's `pack_dataset` ('wrapped')."""
    if not len(dataset):
        return dataset
    from trl.data_utils import pack_dataset

    return pack_dataset(dataset, max_length, strategy="wrapped").select_columns(["input_ids", "labels"])


@dataclass
class PackedRowsCollator:
    """Lay a batch of packed rows (or plain examples, as in evaluation) end to end as one row of
    input_ids, labels and position_ids, with no attention mask and use_cache=False: the model's
    keyword arguments, as the Trainer passes a batch. Every token is a real one."""

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        input_ids, labels, positions = [], [], []
        for example in examples:
            input_ids += example["input_ids"]
            labels += example["labels"]
            positions += [p for length in example.get("seq_lengths") or [len(example["input_ids"])]
                          for p in range(length)]
        position_ids = torch.tensor([positions])
        labels = torch.tensor([labels])
        # An example's first token would otherwise be "predicted" from the end of the example before it.
        labels[position_ids == 0] = IGNORE
        return {"input_ids": torch.tensor([input_ids]), "labels": labels, "position_ids": position_ids,
                "use_cache": False}
