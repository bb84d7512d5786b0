"""Does the exported GGUF answer like the trained model? Greedy token agreement on held-out prompts.

F16 should agree exactly (llama.cpp and transformers compute the same function on the same
weights); quantized files may drift after a near-tie, so their agreement is measured and reported,
not required.
"""

from __future__ import annotations

from pathlib import Path

FALLBACK_PROMPTS = [[{"role": "user", "content": "What is the capital of France?"}],
                    [{"role": "user", "content": "Name three colours."}]]


def held_out_prompts(config: dict, tokenizer, count: int) -> list[str]:
    """The first `count` held-out prompts of the run's own data, rendered as at training time."""
    if count == 0:
        return []
    from fasttune.generate import render_prompt
    from fasttune.recipe import recipe_from_config
    from fasttune.run import load_data

    try:
        recipe = recipe_from_config(config)
        _, eval_rows = load_data(recipe)
        prompts = [recipe.task.prompt(r.data)[0] for r in eval_rows[:count]]
    except Exception:  # data moved or gone since training: fall back to fixed prompts
        prompts = FALLBACK_PROMPTS[:count]
    return [render_prompt(tokenizer, p) for p in prompts]


def agreement(gguf_path: Path, prompts: list[str], reference: list[list[int]], max_new_tokens: int) -> dict:
    from fasttune.export.gguf import greedy_tokens

    per_prompt = []
    for text, ref in zip(prompts, reference):
        got = greedy_tokens(gguf_path, text, max_new_tokens)
        same = 0
        for a, b in zip(got, ref):
            if a != b:
                break
            same += 1
        per_prompt.append({"matched_prefix": same, "gguf_tokens": len(got), "hf_tokens": len(ref), "exact": got == ref})
    return {
        "matched_tokens": sum(p["matched_prefix"] for p in per_prompt),
        "total_tokens": sum(p["hf_tokens"] for p in per_prompt),
        "exact_prompts": sum(p["exact"] for p in per_prompt),
        "prompts": per_prompt,
    }
