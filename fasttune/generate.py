"""Greedy generation for samples, metrics and `fasttune chat`, batched with left padding.

Prompts arrive already rendered (Task.render_prompt, or chat's own renderer), so this module knows
nothing about templates: `raw=True` marks plain text (pre-training prompts), which gets the
tokenizer's special tokens (BOS); rendered chat text carries its own.
"""

from __future__ import annotations


def generate(model, tokenizer, texts: list[str], max_new_tokens: int, batch_size: int = 8, strip: bool = True,
             raw: bool = False) -> list[str]:
    """Greedy answers; `strip=False` keeps leading whitespace (continuing a message mid-text)."""
    import torch

    from fasttune.chat_template import end_of_turn_ids

    device = next(model.parameters()).device
    stop = end_of_turn_ids(tokenizer)  # the template's end of turn, not only EOS (Gemma's differ)
    answers, side = [], tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right edge of every row
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=raw).to(device)
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=stop)
            new = out[:, batch["input_ids"].shape[1]:]
            answers += [t.strip() if strip else t for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return answers
