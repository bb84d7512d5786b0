"""Does the exported GGUF answer like the trained model? Greedy token agreement on held-out prompts.

The prompts are the run's own held-out prompts, as `fasttune run` rendered them for the model
(eval_prompts.json in the run folder); a run folder without that file is reported as unverified
rather than checked on prompts the model never trained for. F16 should agree exactly (llama.cpp and
transformers compute the same function on the same weights); quantized files may drift after a
near-tie, so their agreement is measured and reported, not required.
"""

from __future__ import annotations

from pathlib import Path

from fasttune.run_folder import EVAL_PROMPTS, FinishedRun


def held_out_texts(run: FinishedRun, count: int) -> tuple[list[str], str | None]:
    """Up to `count` rendered held-out prompts, and why there are none when there are none."""
    if count == 0:
        return [], "export.verify_prompts is 0"
    held_out = run.held_out()
    if held_out is None:
        return [], f"the run folder has no {EVAL_PROMPTS} (written by fasttune run since 0.1)"
    if not held_out:
        return [], "the run had no held-out prompts"
    return [item["text"] for item in held_out[:count]], None


def hf_greedy(merged_dir: Path, tokenizer, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """The merged HF model's greedy token ids (float32) for rendered prompts, up to the end of the turn
    (the template's end-of-turn token or EOS, not included: llama.cpp leaves them out too)."""
    import torch
    from transformers import AutoModelForCausalLM

    from fasttune.chat_template import end_of_turn_ids

    model = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    stops = end_of_turn_ids(tokenizer)
    out = []
    for text in prompts:
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=stops)
        new = gen[0, ids["input_ids"].shape[1]:].tolist()
        end = next((i for i, t in enumerate(new) if t in stops), len(new))
        out.append(new[:end])
    return out


def agreement(gguf_path: Path, prompts: list[str], reference: list[list[int]], max_new_tokens: int) -> dict:
    from fasttune.gguf_inference import greedy_tokens

    per_prompt = []
    for text, ref in zip(prompts, reference):
        got = greedy_tokens(gguf_path, text, max_new_tokens)
        same = 0
        for a, b in zip(got, ref):
            if a != b:
                break
            same += 1
        # an answer shorter than max_new_tokens ended on the end-of-turn token (both sides stop on it)
        per_prompt.append({"matched_prefix": same, "gguf_tokens": len(got), "hf_tokens": len(ref), "exact": got == ref,
                           "hf_stopped": len(ref) < max_new_tokens, "gguf_stopped": len(got) < max_new_tokens})
    return {
        "prompts_from": EVAL_PROMPTS,
        "matched_tokens": sum(p["matched_prefix"] for p in per_prompt),
        "total_tokens": sum(p["hf_tokens"] for p in per_prompt),
        "exact_prompts": sum(p["exact"] for p in per_prompt),
        "prompts": per_prompt,
    }
