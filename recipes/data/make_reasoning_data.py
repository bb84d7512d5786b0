"""Generate the unit-conversion reasoning dataset used by the reasoning SFT demo.

Task: supervised fine-tuning on reasoning traces. Every row is a prompt/completion pair whose
completion has its step-by-step reasoning beside it, in `reasoning_content`:
    {"prompt": "How many hours are in 7 days?",
     "reasoning_content": "1 day = 24 hours. 7 × 24 = 7 × 20 + 7 × 4 = 140 + 28 = 168.",
     "completion": "168 hours"}
The answer is exact: the number and the unit. The reasoning states the factor, then multiplies in
steps a small model can follow (a two-digit factor is split into tens and units; 60 is 6 × 10).
One training row in five has an empty reasoning: Qwen3's convention for "answered without
thinking", the same empty think block `enable_thinking=false` prefills at inference, so the model
also sees what thinking off looks like.

Held-out split: the (quantity, conversion) pairs are split, not the rows. Four quantities of
every conversion (44 of 121 pairs) are eval-only, and two of the six phrasings appear in eval only, so
eval measures whether the model converts quantities it never saw converted, asked in new words.
Eval rows always carry their reasoning. `solve()` recomputes every answer from the prompt text.

Stdlib only and deterministic. Run from anywhere:
    python recipes/data/make_reasoning_data.py
It rewrites reasoning_train.jsonl and reasoning_eval.jsonl next to this script.
"""
import json
import random
import re
from pathlib import Path

SEED = 1414
N_TRAIN, N_EVAL, NO_THINK_EVERY = 320, 40, 5
QUANTITIES = range(2, 13)
OUT_DIR = Path(__file__).resolve().parent

# (unit, its singular, smaller unit, factor)
CONVERSIONS = [
    ("hours", "hour", "minutes", 60), ("minutes", "minute", "seconds", 60), ("days", "day", "hours", 24),
    ("weeks", "week", "days", 7), ("feet", "foot", "inches", 12), ("years", "year", "months", 12),
    ("meters", "meter", "centimeters", 100), ("kilometers", "kilometer", "meters", 1000),
    ("kilograms", "kilogram", "grams", 1000), ("liters", "liter", "milliliters", 1000),
    ("centimeters", "centimeter", "millimeters", 10),
]
TRAIN_PHRASINGS = ["Convert {n} {big} to {small}.", "How many {small} are in {n} {big}?",
                   "{n} {big} is how many {small}?", "What is {n} {big} in {small}?"]
EVAL_PHRASINGS = ["Express {n} {big} in {small}.", "How many {small} make up {n} {big}?"]


def steps(n: int, f: int) -> str:
    """n × f worked out in steps: powers of ten at once, 60 as 6 × 10, two-digit factors split."""
    if f in (10, 100, 1000) or f < 10:
        return f"{n} × {f} = {n * f}."
    if f == 60:
        return f"{n} × 60 = {n} × 6 × 10 = {n * 6} × 10 = {n * 60}."
    tens, units = f - f % 10, f % 10
    return f"{n} × {f} = {n} × {tens} + {n} × {units} = {n * tens} + {n * units} = {n * f}."


def row(n: int, conversion: tuple, phrasing: str, think: bool) -> dict:
    big, one, small, f = conversion
    reasoning = f"1 {one} = {f} {small}. {steps(n, f)}"
    return {"prompt": phrasing.format(n=n, big=big, small=small),
            "reasoning_content": reasoning if think else "", "completion": f"{n * f} {small}"}


def solve(prompt: str) -> str:
    """The answer, recomputed from the prompt text alone."""
    n = int(re.search(r"\d+", prompt).group())
    for big, _, small, f in CONVERSIONS:
        if re.search(rf"\b{n} {big}\b", prompt) and re.search(rf"\b{small}\b", prompt):
            return f"{n * f} {small}"
    raise ValueError(f"no conversion in {prompt!r}")


def main() -> None:
    rng = random.Random(SEED)
    held = set()
    for c in range(len(CONVERSIONS)):  # four held-out quantities per conversion
        held |= {(n, c) for n in rng.sample(list(QUANTITIES), 4)}
    pairs = [(n, c) for c in range(len(CONVERSIONS)) for n in QUANTITIES]
    train_pairs = [p for p in pairs if p not in held]
    eval_pairs = sorted(held)
    train = [row(n, CONVERSIONS[c], rng.choice(TRAIN_PHRASINGS), i % NO_THINK_EVERY != 0)
             for i, (n, c) in enumerate(rng.choices(train_pairs, k=N_TRAIN))]
    rng.shuffle(eval_pairs)
    evaluation = [row(n, CONVERSIONS[c], rng.choice(EVAL_PHRASINGS), True) for n, c in eval_pairs[:N_EVAL]]
    # checks on the written text: every answer recomputed, no eval pair in train
    for r in train + evaluation:
        assert solve(r["prompt"]) == r["completion"], r
        if r["reasoning_content"]:  # the reasoning ends in the answer's number
            assert re.findall(r"\d+", r["reasoning_content"])[-1] == r["completion"].split()[0], r
    seen = {(int(re.search(r"\d+", r["prompt"]).group()), solve(r["prompt"]).split()[1]) for r in train}
    for r in evaluation:
        assert (int(re.search(r"\d+", r["prompt"]).group()), solve(r["prompt"]).split()[1]) not in seen, r
    for name, rows in (("reasoning_train.jsonl", train), ("reasoning_eval.jsonl", evaluation)):
        with open(OUT_DIR / name, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        thinking = sum(bool(r["reasoning_content"]) for r in rows)
        print(f"{name}: {len(rows)} rows, {thinking} with reasoning, {len(rows) - thinking} answered directly")
    print(f"held out for eval: {len(held)} of {len(pairs)} (quantity, conversion) pairs, "
          f"{len(EVAL_PHRASINGS)} of {len(TRAIN_PHRASINGS) + len(EVAL_PHRASINGS)} phrasings")


if __name__ == "__main__":
    main()
