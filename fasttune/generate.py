"""Greedy generation for samples and metrics, batched with left padding, using the same template
the task trained with: a message list goes through the chat template with the generation prompt,
a plain string (raw/pre-training tasks) is continued as is."""

from __future__ import annotations


def render_prompt(tokenizer, prompt) -> str:
    """A prompt is raw text, a message list, or {"messages", "tools"} (function calling)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        return tokenizer.apply_chat_template(prompt["messages"], tools=prompt["tools"], tokenize=False,
                                             add_generation_prompt=True)
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def generate(model, tokenizer, prompts: list, max_new_tokens: int, batch_size: int = 8, strip: bool = True) -> list[str]:
    """Greedy answers; `strip=False` keeps leading whitespace (continuing a message mid-text)."""
    import torch

    device = next(model.parameters()).device
    texts = [render_prompt(tokenizer, p) for p in prompts]
    raw = bool(prompts) and isinstance(prompts[0], str)
    answers, side = [], tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right edge of every row
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=raw).to(device)  # chat templates add their own BOS
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                     pad_token_id=tokenizer.pad_token_id)
            new = out[:, batch["input_ids"].shape[1]:]
            answers += [t.strip() if strip else t for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return answers
