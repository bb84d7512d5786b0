"""Constrained answers: score every valid label as the assistant's reply and pick the likeliest.

For a prompt and labels L1..Lk, each label is rendered as the assistant turn of the chat template
(label text plus end-of-turn token, so a label that is a prefix of another cannot win by stopping
early). Its score is the sum of the model's log-probabilities of those tokens, i.e. the probability
that the model would generate exactly that reply. A softmax over the k scores gives a probability
among the valid labels. Nothing outside the label set can ever be answered.

The k sequences share the whole prompt, so it runs through the model once and its KV cache is
repeated for the k label continuations: about k times less compute than scoring each sequence in
full, which is most of the cost of classification eval on a CPU. Where the model returns no
reusable cache object (Unsloth's patched CUDA forward returns a tuple), every full sequence is
scored instead: the same numbers, k times the prompt compute.
"""

from __future__ import annotations

from fasttune.chat_template import IGNORE, tokenize_conversation


def label_probabilities(model, tokenizer, prompts: list[list[dict]], labels: list[str],
                        share_prefix: bool = True) -> list[list[float]]:
    """For each prompt (a message list), the probability of each label, in `labels` order.
    `share_prefix=False` scores every full sequence (what a model without a reusable cache gets)."""
    import torch

    return [torch.softmax(_label_scores(model, tokenizer, prompt, labels, share_prefix), dim=0).tolist()
            for prompt in prompts]


def reply_log_probability(model, tokenizer, prompt: list[dict], reply: str) -> float:
    """The summed log-probability of `reply` (and its end of turn) as the assistant's answer to `prompt`."""
    return float(_label_scores(model, tokenizer, prompt, [reply], share_prefix=False)[0])


def _label_scores(model, tokenizer, prompt: list[dict], labels: list[str], share_prefix: bool):
    """Summed log-probability of each label's reply tokens after `prompt`."""
    import torch

    seqs = [tokenize_conversation(tokenizer, [*prompt, {"role": "assistant", "content": label}], max_length=10**6)
            for label in labels]
    device = next(model.parameters()).device
    cut, cache = _shared_prefix(seqs), None
    if share_prefix and cut:
        with torch.no_grad():
            prefix = torch.tensor([seqs[0].input_ids[:cut]], device=device)
            cache = model(input_ids=prefix, use_cache=True).past_key_values
        if hasattr(cache, "batch_repeat_interleave"):
            cache.batch_repeat_interleave(len(seqs))
        else:  # Unsloth's CUDA inference path hands back a plain tuple, which cannot be repeated per label
            cache = None
    if cache is None:
        cut = 0
    ids, targets, mask = _continuations(seqs, cut, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), past_key_values=cache,
                       use_cache=cache is not None).logits
    # Position t predicts token t + 1; only label positions are normalised over the vocabulary.
    next_tokens = targets[:, 1:].to(device)
    rows, cols = (next_tokens != IGNORE).nonzero(as_tuple=True)
    picked = torch.log_softmax(logits[rows, cols].float(), dim=-1).gather(-1, next_tokens[rows, cols].unsqueeze(-1))
    return torch.zeros(len(seqs), device=device).index_add_(0, rows, picked.squeeze(-1)).cpu()


def _shared_prefix(seqs) -> int:
    """Tokens every sequence shares before its label: they end before the first token that differs
    or is trained, and the last shared one goes with the continuations, since its logits predict
    the first label token."""
    first_trained = min(s.labels.index(next(t for t in s.labels if t != IGNORE)) for s in seqs)
    shared = next((i for i in range(first_trained) if len({s.input_ids[i] for s in seqs}) > 1), first_trained)
    return max(shared - 1, 0)


def _continuations(seqs, cut: int, pad_id: int):
    """Right-padded ids and targets of every sequence after `cut`, and an attention mask that also
    covers the `cut` cached prefix tokens."""
    import torch

    k, width = len(seqs), max(len(s.input_ids) for s in seqs) - cut
    ids = torch.full((k, width), pad_id, dtype=torch.long)
    targets = torch.full((k, width), IGNORE, dtype=torch.long)
    mask = torch.zeros((k, cut + width), dtype=torch.long)
    mask[:, :cut] = 1
    for row, s in enumerate(seqs):
        tail = s.input_ids[cut:]
        ids[row, :len(tail)] = torch.tensor(tail)
        targets[row, :len(tail)] = torch.tensor(s.labels[cut:])
        mask[row, cut:cut + len(tail)] = 1
    return ids, targets, mask
