"""Attention for fasttune's packed batches on CPU: each example attends to itself only, and costs only itself.

A packed batch lays several examples end to end, their position ids restarting at 0. transformers
separates them with a block-diagonal (row, row) mask, and PyTorch's CPU attention kernels compute
every block of it, masked or not: a row of sixteen 64-token examples does 16x the score work its
examples need. Here the examples are gathered into an (examples, heads, longest, dim) batch,
attended with a causal mask in two batched matmuls and a softmax, and gathered back into the row,
with no mask to build. Written by hand because PyTorch has no CPU varlen kernel to call instead, and
flex_attention needs a compile that costs more than a short CPU run saves (per-layer and per-step
figures: benchmarks/README.md).

A step trick (fasttune/trainer/tricks.py): on only inside the Trainer's steps over fasttune's packed
batches; generation and scoring keep the model's own attention. tests/test_packed_rows_cpu.py holds
its logits and gradients to those of each example run alone.
"""

from __future__ import annotations

from contextlib import contextmanager

NAME = "fasttune_packed_rows"


class PackedRowsAttention:
    """The step trick: applies wherever the trainer collates fasttune's packed rows (train.packing=on on CPU)."""

    name = "packed rows attention"

    def applies(self, trainer) -> bool:
        from fasttune.trainer.packing import PackedRowsCollator

        return isinstance(trainer.data_collator, PackedRowsCollator)

    def context(self, trainer):
        return packed_rows_attention(trainer.model)


def layout(position_ids):
    """Where each example of a packed batch lies, as (gather, keep, bias).

    gather (examples, longest): flat positions of each example's tokens, its last token repeated
    past its end (those keys come after every real query, so the causal bias hides them); keep: the
    real tokens' places in the gathered batch, in the flat order of the rows (every token belongs to
    one example, and the examples lie in order); bias (longest, longest): 0 on and below the
    diagonal, -inf above."""
    import torch

    if bool((position_ids[:, 0] != 0).any()):
        raise ValueError("fasttune's packed-row attention needs every row to start an example (position 0)")
    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0).squeeze(-1)
    ends = torch.cat([starts[1:], starts.new_tensor([flat.numel()])])
    row_ends = (starts // position_ids.shape[-1] + 1) * position_ids.shape[-1]  # an example ends with its row
    lengths = torch.minimum(ends, row_ends) - starts
    longest = int(lengths.max())
    offsets = torch.arange(longest)
    gather = starts[:, None] + torch.minimum(offsets[None, :], lengths[:, None] - 1)
    keep = torch.nonzero((offsets[None, :] < lengths[:, None]).reshape(-1)).squeeze(-1)
    bias = torch.full((longest, longest), float("-inf")).triu(1)
    return gather, keep, bias


class Layouts:
    """The layout of the batch being computed: the layers of one forward share it (same position ids)."""

    def __init__(self):
        self.position_ids, self.layout = None, None

    def of(self, position_ids):
        if self.position_ids is not position_ids:
            self.position_ids, self.layout = position_ids, layout(position_ids)
        return self.layout


def packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_ids=None,
                     layouts: Layouts | None = None, **kwargs):
    """transformers' attention-function contract: query (batch, heads, row, dim), key/value with
    the model's key-value heads; returns (batch, row, heads, dim) and no weights. `layouts` keeps the
    batch's layout between the layers of one forward (computed again when None)."""
    import torch

    batch, heads, row, dim = query.shape
    if position_ids is None or key.shape[2] != row or position_ids.shape != (batch, row):
        raise ValueError("fasttune's packed-row attention needs position ids and no KV cache")
    if dropout or kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None \
            or (kwargs.get("sliding_window") or row) < row:
        return _sdpa_fallback(module, query, key, value, position_ids, scaling, dropout, **kwargs)
    gather, keep, bias = (layouts or Layouts()).of(position_ids)
    kv_heads = key.shape[1]
    group = heads // kv_heads
    examples, longest = gather.shape

    def by_example(states):  # (batch, h, row, dim) -> (examples, h, longest, dim)
        flat = states.transpose(1, 2).reshape(batch * row, states.shape[1], dim)
        return flat.index_select(0, gather.reshape(-1)).view(examples, longest, states.shape[1], dim).transpose(1, 2)

    # Grouped-query attention without copying keys: the `group` query heads that share a key head
    # are stacked along the sequence, so each key head meets all its queries in one matmul. Scores
    # and softmax are fp32, outside autocast: a model's large attention logits (SmolLM2's first
    # layers reach the hundreds) lose whole units when a bf16 matmul rounds them, and the key
    # gradients with them. The probabilities then meet the values in the values' dtype, as in
    # flash attention.
    scale = scaling if scaling is not None else dim**-0.5
    with torch.autocast(query.device.type, enabled=False):
        q = (by_example(query).float() * scale).reshape(examples * kv_heads, group * longest, dim)
        k = by_example(key).float().reshape(examples * kv_heads, longest, dim)
        v = by_example(value).reshape(examples * kv_heads, longest, dim)
        scores = torch.baddbmm(bias.repeat(group, 1), q, k.transpose(-1, -2))  # the causal mask rides in as a bias
        out = torch.bmm(scores.softmax(-1).to(v.dtype), v)
    out = out.view(examples, heads, longest, dim).transpose(1, 2).reshape(examples * longest, heads, dim)
    return out.index_select(0, keep).view(batch, row, heads, dim), None


def _sdpa_fallback(module, query, key, value, position_ids, scaling, dropout, **kwargs):
    """What this module does not cover (attention dropout, logit soft-capping, sinks, a sliding window
    shorter than the row): transformers' SDPA attention with the block-diagonal mask it would build."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    row = query.shape[2]
    example = (position_ids == 0).cumsum(-1)
    places = torch.arange(row)
    allowed = places[None, :] <= places[:, None]
    if kwargs.get("sliding_window"):
        allowed &= places[:, None] - places[None, :] < kwargs["sliding_window"]
    mask = (example[:, None, :, None] == example[:, None, None, :]) & allowed
    return sdpa_attention_forward(module, query, key, value, mask, scaling=scaling, dropout=dropout, **kwargs)


@contextmanager
def packed_rows_attention(model):
    """Run the model's forwards inside with packed-row attention, then give back its own.

    The attention function is registered under NAME with this context's own layout cache. It has no
    mask function, so transformers builds no (row, row) mask for it: the examples' bounds come from the
    position ids alone. The model's config is switched by its `_attn_implementation` field rather than
    `set_attn_implementation`, which re-validates the model (reading its source) on every call: this
    runs twice per step."""
    from functools import partial

    from transformers import AttentionInterface

    AttentionInterface.register(NAME, partial(packed_attention, layouts=Layouts()))
    config = model.config
    own = config._attn_implementation
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = own
