"""Attention for fasttune's packed batches on CPU: each example attends to itself only, and costs only itself.

A packed batch lays several examples end to end, their position ids restarting at 0. transformers
separates them with a block-diagonal (row, row) mask, and PyTorch's CPU attention kernels compute
every block of it, masked or not: a row of sixteen 64-token examples does 16x the score work its
examples need, and the CPU flash kernel is slow at these sizes besides (attention was ~22% of a
packed step on this project's CPU, measured with torch.profiler). Here the examples are gathered
into an (examples, heads, longest, dim) batch, attended with a causal mask in two batched matmuls
and a softmax, and gathered back into the row: per layer 12 ms instead of 21 ms on SmolLM2-135M's
chat batches, and no mask to build. PyTorch has no CPU varlen kernel to call instead, and
flex_attention needs a compile that costs more than a short CPU run saves.

Used only inside the Trainer's forwards over fasttune's packed batches (`trainer.py` turns it on
around them); generation and scoring keep the model's own attention. tests/test_packed_rows_cpu.py
holds its logits and gradients to those of each example run alone.
"""

from __future__ import annotations

from contextlib import contextmanager

NAME = "fasttune_packed_rows"


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


_cached: tuple = (None, None)  # (position_ids, its layout): the layers of one forward share it


def packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_ids=None,
                     **kwargs):
    """transformers' attention-function contract: query (batch, heads, row, dim), key/value with
    the model's key-value heads; returns (batch, row, heads, dim) and no weights."""
    import torch

    global _cached
    batch, heads, row, dim = query.shape
    if position_ids is None or key.shape[2] != row or position_ids.shape != (batch, row):
        raise ValueError("fasttune's packed-row attention needs position ids and no KV cache")
    if dropout or kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None \
            or (kwargs.get("sliding_window") or row) < row:
        return _sdpa_fallback(module, query, key, value, position_ids, scaling, dropout, **kwargs)
    if _cached[0] is not position_ids:
        _cached = (position_ids, layout(position_ids))
    gather, keep, bias = _cached[1]
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


def register() -> None:
    """Make NAME an attention implementation. It has no mask function, so transformers builds no
    mask for it (a (row, row) one per forward is measurable on CPU): the examples' bounds come
    from the position ids alone."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, packed_attention)


@contextmanager
def packed_rows_attention(model):
    """Run the model's forwards inside with packed-row attention, then give back its own."""
    register()
    config = model.config
    own = config._attn_implementation
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = own
        global _cached
        _cached = (None, None)
