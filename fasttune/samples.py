"""Answers to held-out prompts before and after training, written to samples.md so the change a run
made can be read, not just inferred from a loss curve."""

from __future__ import annotations

from pathlib import Path


def generate(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int) -> list[str]:
    """Greedy answers, one prompt at a time (no padding to get wrong), using the training template."""
    import torch

    device = next(model.parameters()).device
    answers = []
    for messages in prompts:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        ids = {k: v.to(device) for k, v in ids.items()}
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=tokenizer.pad_token_id)
        answers.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return answers


def write_samples(path: Path, prompts: list[list[dict]], references: list[str], before: list[str], after: list[str]) -> None:
    lines = ["# Samples: held-out prompts, answered before and after training (greedy)", ""]
    for i, (messages, ref, b, a) in enumerate(zip(prompts, references, before, after), start=1):
        lines.append(f"## {i}. {messages[-1]['content']}")
        if len(messages) > 1:
            lines.append(f"_(after {len(messages) - 1} earlier messages)_")
        lines += ["", f"- **before:** {b}", f"- **after:** {a}", f"- **reference:** {ref}", ""]
    path.write_text("\n".join(lines))
