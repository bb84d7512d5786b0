"""Packed rows for CPU training: several whole examples per row, each attending only to itself.

Why fasttune packs on CPU itself: a CPU multiplies a 1024-row matrix at ~1.4x the rate of a 256-row
one (measured on this project's 2-core bf16 CPU), so a step over four full rows of 256 tokens does
more work per second than four chat rows of ~63 tokens, and no compute goes to padding. TRL's packing
cannot be used here: its collator either flattens the whole batch into one padding-free row (attention
then spans all examples of the batch, quadratic in the batch's total length) or adds an attention mask,
which stops transformers from separating the packed examples. Unsloth's CPU fallback turns TRL's
packing off for that reason.

What keeps the examples apart is the position ids: they restart at 0 at every example, and with no
attention mask and no KV cache in the forward, transformers builds a block-diagonal causal mask from
them (`masking_utils.find_packed_sequence_indices`). The cache matters: a model whose config has
use_cache on (Unsloth's does) skips that mask, and the examples of a row would see each other, so the
batch itself says `use_cache=False`. Rotary positions restart too, so each example sees the
positions it would see alone; `tests/test_packing.py` checks that a packed row's logits equal each
example's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from fasttune.chat_template import IGNORE


def pack_rows(dataset, max_length: int):
    """Bin-pack tokenized examples (input_ids, labels) into rows of at most max_length tokens, by
    TRL's best-fit-decreasing `pack_dataset`; each row keeps `seq_lengths`, its examples' lengths.

    Examples of one token are left out: a row's first token is never predicted, so they carry no loss,
    and the collator's padding rule (a trailing run of position 0) needs every example to be longer."""
    from trl.data_utils import pack_dataset

    columns = dataset.select_columns(["input_ids", "labels"])
    return pack_dataset(columns.filter(lambda row: len(row["input_ids"]) > 1), max_length, strategy="bfd")


@dataclass
class PackedRowsCollator:
    """Batch packed rows (or plain examples, as in evaluation) into input_ids, labels and position_ids,
    with no attention mask and use_cache=False: the model's keyword arguments, as the Trainer passes a
    batch. Padding comes last in a row, every pad token at position 0 (each its own
    one-token sequence, so it sees only itself) and with no label."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        shape = (len(examples), width)
        input_ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE, dtype=torch.long)
        position_ids = torch.zeros(shape, dtype=torch.long)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            input_ids[row, :n] = torch.tensor(example["input_ids"])
            labels[row, :n] = torch.tensor(example["labels"])
            lengths = example.get("seq_lengths") or [n]
            position_ids[row, :n] = torch.cat([torch.arange(length) for length in lengths])
        # An example's first token would otherwise be "predicted" from the end of the example before it.
        labels[position_ids == 0] = IGNORE
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "use_cache": False}


def count_packed(position_ids) -> int:
    """Non-padding tokens of a batch without an attention mask: each row less its trailing run of
    position 0. As PackedRowsCollator lays rows out that run is exactly the padding, since every
    example is at least two tokens long, so a real example never ends at position 0. (TRL's
    padding-free rows have no padding; a one-token last example there would be missed.)"""
    trailing = (position_ids == 0).flip(-1).int().cumprod(-1).sum(-1)
    return int(position_ids.numel() - trailing.sum())
