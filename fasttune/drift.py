"""eval.drift: did training break what the model could do outside the task?

Fixed general prompts (fasttune/drift_prompts.py), none from the task's data, are answered greedily by
the base model, which is the same LoRA model with its adapter switched off (no second model loads).
Prompt and base answer are then read by both sides, adapter off and on, and at each answer position
the tuned model's next-token distribution is compared with the base's: KL(base || tuned) in nats,
float32, averaged over the answer's tokens, one figure per prompt. A prompt's answer changed when the
tuned model's greedy answer differs from the base's. An adapter that changes nothing (LoRA B = 0, as
before training) gives KL 0 and no changed answer.

Cost: per batch of eval.batch_size prompts, the base's generation and one forward per side; the tuned
model generates only the changed answers samples.md shows.
"""

from __future__ import annotations

import inspect
import statistics

from fasttune.drift_prompts import PROMPTS

MAX_NEW_TOKENS = 16
"""Tokens of each answer: enough to see an answer change, few enough to keep the check cheap."""
SHOWN = 3  # prompts whose base and tuned answers samples.md shows


def measure(model, tokenizer, task, cfg, prompts: list[str] = PROMPTS, max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """eval.json's `drift`: {kl_mean, kl_p95, answers_changed, prompts, max_new_tokens, examples}, or
    {"skipped": why} when the model has no adapter to switch off. `model` is in inference mode."""
    import torch

    if not hasattr(model, "disable_adapter"):
        return {"skipped": f"the model is not a peft LoRA model ({type(model).__name__}): there is no adapter "
                           "to switch off, so no base model to compare with"}
    raw = not tokenizer.chat_template  # a base model without a template: plain text, as its task prompts it
    enabled = {"on": True, "off": False}.get(cfg.thinking)
    texts = [q if raw else task.render_prompt(tokenizer, [{"role": "user", "content": q}], enabled) for q in prompts]
    kls, changed, base_answers = [], [], []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # answers continue from the right edge of every row
    try:
        with torch.no_grad():
            for start in range(0, len(texts), cfg.batch_size):
                batch = _encode(model, tokenizer, texts[start:start + cfg.batch_size], raw)
                kl, moved, base = _batch(model, tokenizer, batch, max_new_tokens)
                kls, changed, base_answers = kls + kl, changed + moved, base_answers + base
            shown = ([i for i in range(len(prompts)) if changed[i]] + [i for i in range(len(prompts))
                                                                       if not changed[i]])[:SHOWN]
            redo = [i for i in shown if changed[i]]  # the tuned answers shown that differ: generated in full
            tuned = dict(zip(redo, _generate(model, tokenizer, _encode(model, tokenizer, [texts[i] for i in redo], raw),
                                             max_new_tokens)[1])) if redo else {}
    finally:
        tokenizer.padding_side = side
    return {"kl_mean": round(sum(kls) / len(kls), 6), "kl_p95": round(p95(kls), 6),
            "answers_changed": sum(changed), "prompts": len(prompts), "max_new_tokens": max_new_tokens,
            "examples": [{"prompt": prompts[i], "base": base_answers[i], "tuned": tuned.get(i, base_answers[i])}
                         for i in shown]}


def _encode(model, tokenizer, texts: list[str], raw: bool):
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=raw).to(
        next(model.parameters()).device)


def _generate(model, tokenizer, batch, max_new_tokens: int):
    """Greedy answers as (full sequences, the answers' text), stopping at the template's end of turn."""
    from fasttune.chat_template import end_of_turn_ids

    sequences = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                               pad_token_id=tokenizer.pad_token_id, eos_token_id=end_of_turn_ids(tokenizer))
    answers = tokenizer.batch_decode(sequences[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return sequences, [a.strip() for a in answers]


def _batch(model, tokenizer, batch, max_new_tokens: int) -> tuple[list[float], list[bool], list[str]]:
    """One batch: KL(base || tuned) per prompt on the base's greedy answers, whether the tuned model's
    greedy answer differs, and the base's answers. Both read the base's answer (teacher forcing): the
    tuned greedy answer is the base's exactly when the two sides' most likely tokens agree at every
    answer position, so no second generation is needed to count the answers that changed."""
    import torch

    from fasttune.chat_template import end_of_turn_ids

    prompt_len = batch["input_ids"].shape[1]
    with model.disable_adapter():
        sequences, base_answers = _generate(model, tokenizer, batch, max_new_tokens)
    answer = sequences[:, prompt_len:]
    width = answer.shape[1]
    # an answer's tokens: up to and including its first stop token (after it, generation pads)
    is_stop = torch.isin(answer, torch.tensor(end_of_turn_ids(tokenizer), device=answer.device))
    kept = (torch.cumsum(is_stop, dim=1) - is_stop.long()) == 0
    mask = torch.cat([batch["attention_mask"], kept.long()], dim=1)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    # the logits of the answer's positions only (and the last, unused): the vocabulary projection of
    # the prompt's positions would be much of the forward's cost
    keep = {"logits_to_keep": width + 1} if "logits_to_keep" in \
        inspect.signature(model.get_base_model().forward).parameters else {}

    def log_probs():  # the distributions that predict each answer token, float32
        logits = model(input_ids=sequences, attention_mask=mask, position_ids=positions, **keep).logits
        return torch.log_softmax(logits[:, -width - 1:-1].float(), dim=-1)

    with model.disable_adapter():
        base = log_probs()
    tuned = log_probs()
    kl = (base.exp() * (base - tuned)).sum(dim=-1).clamp(min=0)  # [rows, answer positions]
    per_prompt = ((kl * kept).sum(dim=1) / kept.sum(dim=1).clamp(min=1)).tolist()
    # against the base's own choice read the same way (not the generated token: cached and uncached
    # attention round differently in 16 bits, and a near-tie may go either way)
    moved = ((tuned.argmax(dim=-1) != base.argmax(dim=-1)) & kept).any(dim=1).tolist()
    return per_prompt, moved, base_answers


def p95(values: list[float]) -> float:
    """The 95th percentile, interpolated between the two nearest values (numpy's default method)."""
    return values[0] if len(values) == 1 else statistics.quantiles(values, n=20, method="inclusive")[-1]


def summary_line(drift: dict) -> str:
    """The one line a run prints about it."""
    if "skipped" in drift:
        return f"General prompts not checked (eval.drift): {drift['skipped']}"
    return (f"General answers changed on {drift['answers_changed']}/{drift['prompts']} prompts; mean KL "
            f"{drift['kl_mean']:.2f} nats (eval.drift: a check that training did not break what the model could do)")


def samples_section(drift: dict) -> list[str]:
    """samples.md's closing section: a few general prompts answered by the base and the tuned model."""
    if "examples" not in drift:
        return []
    lines = ["# General prompts: the base model and the tuned one (eval.drift)", "",
             f"{summary_line(drift)}; each answer at most {drift['max_new_tokens']} tokens.", ""]
    for i, example in enumerate(drift["examples"], start=1):
        lines += [f"## {i}. {example['prompt']}", "", f"- **base:** {example['base']}",
                  f"- **tuned:** {example['tuned']}", ""]
    return lines
