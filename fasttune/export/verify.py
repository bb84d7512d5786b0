"""Does the exported GGUF answer like the trained model? Greedy token agreement on held-out prompts.

The prompts are the run's own held-out prompts, as `fasttune run` rendered them for the model
(eval_prompts.json in the run folder); a run folder without that file is reported as unverified
rather than checked on prompts the model never trained for. F16 should agree exactly (llama.cpp and
transformers compute the same function on the same weights); quantized files may drift after a
near-tie, so their agreement is measured and reported, not required.

Two counts, because one flip makes the rest of a free-running answer a different sentence:
`matched_tokens` counts each GGUF answer's tokens up to its first difference from the merged model's;
`next_token_matches` counts the positions where the GGUF, given the merged model's own answer so far,
picks the merged model's next token (teacher forcing), which is how often quantization changed a
greedy choice. At the first difference the merged model's margin (its top logit minus the runner-up)
says whether that choice was a near-tie.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class Answer:
    """The merged model's greedy answer to one prompt."""

    tokens: list[int]
    """Its token ids, up to the end of the turn (not included)."""
    margins: list[float]
    """At each of those tokens, its logit minus the runner-up's: how near a tie the greedy choice was."""


def hf_greedy(merged_dir: Path, tokenizer, prompts: list[str], max_new_tokens: int) -> list[Answer]:
    """The merged HF model's greedy answers (float32) to rendered prompts, up to the end of the turn
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
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=stops)
        new = gen.sequences[0, ids["input_ids"].shape[1]:].tolist()
        end = next((i for i, t in enumerate(new) if t in stops), len(new))
        top2 = [step[0].float().topk(2).values for step in gen.logits[:end]]
        out.append(Answer(new[:end], [round(float(a - b), 4) for a, b in top2]))
    return out


def agreement(gguf_path: Path, prompts: list[str], reference: list[Answer], max_new_tokens: int) -> dict:
    from fasttune.gguf_inference import sized_for

    with sized_for(gguf_path, prompts, max_new_tokens) as llm:  # one load answers every prompt
        per_prompt = [compare(llm, text, ref, max_new_tokens) for text, ref in zip(prompts, reference)]
    return {
        "prompts_from": EVAL_PROMPTS,
        "matched_tokens": sum(p["matched_prefix"] for p in per_prompt),
        "next_token_matches": sum(p["next_token_matches"] for p in per_prompt),
        "total_tokens": sum(p["hf_tokens"] for p in per_prompt),
        "exact_prompts": sum(p["exact"] for p in per_prompt),
        "prompts": per_prompt,
    }


def compare(llm, text: str, ref: Answer, max_new_tokens: int) -> dict:
    """One prompt: the open GGUF's greedy answer against the merged model's, counted both ways."""
    from fasttune.gguf_inference import forced_choices, greedy_continue

    got = greedy_continue(llm, text, max_new_tokens)
    same = 0
    for a, b in zip(got, ref.tokens):
        if a != b:
            break
        same += 1
    # an answer shorter than max_new_tokens ended on the end-of-turn token (both sides stop on it)
    item = {"matched_prefix": same, "gguf_tokens": len(got), "hf_tokens": len(ref.tokens),
            "exact": got == ref.tokens, "hf_stopped": len(ref.tokens) < max_new_tokens,
            "gguf_stopped": len(got) < max_new_tokens, "next_token_matches": len(ref.tokens)}
    if not item["exact"] and same < len(ref.tokens):
        # up to `same` the GGUF saw the merged model's prefix and chose its token; at `same` it did not
        later = forced_choices(llm, text, ref.tokens, same + 1)
        item["next_token_matches"] = same + sum(a == b for a, b in zip(later, ref.tokens[same + 1:]))
        item["first_difference"] = {"position": same, "merged": ref.tokens[same],
                                    "gguf": got[same] if same < len(got) else "end of turn",
                                    "merged_margin": ref.margins[same]}
    return item
