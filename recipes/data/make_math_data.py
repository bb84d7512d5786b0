"""Generate the tiny arithmetic word-problem dataset used by the GRPO demo.

Task: reinforcement fine-tuning with a verifiable reward. Every row is one EASY
word problem with a single operation (addition, subtraction or multiplication
of small numbers) and a non-negative integer answer, e.g.
    {"prompt": "Tom has 7 apples and buys 5 more. How many apples does he have now?",
     "answer": "12"}
The answer is the integer written as a string. The prompt is only the problem
text: the system / answer-format instruction is added by the recipe. Problems
are short (under 30 words) so a 135M model can learn them on a CPU.
``solve()`` re-reads a prompt with the template it came from and recomputes
the answer from the numbers in the text, so every row is checked end to end.

Held-out split: the templates and the number pairs are split, not the rows.
About 25% of the templates of every operation are eval-only, and about 20% of
the unordered number pairs {x, y} are eval-only (split separately among the
small pairs used by multiplication and the larger ones), so eval measures
whether the skill generalises to new wordings *and* new numbers. Names and
objects are shared by both splits.

Stdlib only and deterministic. Run from anywhere:
    python recipes/data/make_math_data.py
It rewrites math_train.jsonl and math_eval.jsonl next to this script.
"""
import json
import random
import re
from collections import Counter
from pathlib import Path

SEED = 2718
N_TRAIN, N_EVAL = 300, 40
TEMPLATE_HOLDOUT, PAIR_HOLDOUT, MAX_WORDS = 0.25, 0.20, 30
NUM_MIN, NUM_MAX, MUL_MAX = 2, 20, 10  # operands; multiplication uses only 2..MUL_MAX
OUT_DIR = Path(__file__).resolve().parent

NAMES = [("Tom", "m"), ("Anna", "f"), ("Sam", "m"), ("Lily", "f"), ("Ben", "m"), ("Mia", "f"),
    ("Leo", "m"), ("Emma", "f"), ("Max", "m"), ("Zoe", "f"), ("Jack", "m"), ("Ella", "f"),
    ("Omar", "m"), ("Nina", "f"), ("Ravi", "m"), ("Sara", "f"), ("Luis", "m"), ("Amy", "f"),
    ("Kai", "m"), ("Ruby", "f"), ("Noah", "m"), ("Maya", "f"), ("Finn", "m"), ("Ivy", "f")]
THINGS = ["pencils", "stickers", "marbles", "books", "balloons", "shells", "cards", "stamps",
    "coins", "crayons", "toy cars", "buttons", "beads", "blocks", "rocks", "flowers"]
FOODS = ["apples", "cookies", "oranges", "muffins", "bananas", "cupcakes", "candies", "lemons",
    "plums", "carrots", "eggs", "pears"]

# (operation, template). Placeholders: {a} {b} numbers, {name}/{name2} people, {he} {He} {him}
# pronouns of {name}, {obj} any plural object, {food} a plural food. Every template asks one
# question whose answer is a+b, a-b (a > b) or a*b.
TEMPLATES = [
    ("add", "{name} has {a} {obj} and buys {b} more. How many {obj} does {he} have now?"),
    ("add", "{name} had {a} {obj}. {name2} gave {him} {b} more. How many {obj} does {name} have now?"),
    ("add", "There are {a} {obj} in a box. {name} puts in {b} more. How many {obj} are in the box now?"),
    ("add", "{name} collected {a} {obj} on Monday and {b} {obj} on Tuesday. How many {obj} did {he} collect in total?"),
    ("add", "{name} has {a} {obj} and {name2} has {b} {obj}. How many {obj} do they have altogether?"),
    ("add", "A shop sold {a} {food} in the morning and {b} {food} in the afternoon. How many {food} did it sell?"),
    ("add", "{name} found {a} {obj} yesterday and {b} {obj} today. How many {obj} has {he} found so far?"),
    ("add", "A basket holds {a} {food}. {name} adds {b} more {food}. How many {food} are in the basket?"),
    ("sub", "{name} has {a} {obj} and gives {b} to {name2}. How many {obj} does {name} have left?"),
    ("sub", "{name} had {a} {obj}. {He} lost {b} of them. How many {obj} does {he} have now?"),
    ("sub", "There are {a} {obj} on the table. {name} takes {b} away. How many {obj} are left on the table?"),
    ("sub", "{name} bought {a} {food}. {He} ate {b} of them. How many {food} are left?"),
    ("sub", "A shop had {a} {food} and sold {b}. How many {food} does the shop have left?"),
    ("sub", "{name} has {a} {obj}. {name2} has {b} {obj}. How many more {obj} does {name} have than {name2}?"),
    ("sub", "{name} needs {a} {obj} and already has {b}. How many more {obj} does {he} need?"),
    ("sub", "A jar held {a} {obj}. {name} took out {b}. How many {obj} are still in the jar?"),
    ("mul", "{name} has {a} bags with {b} {obj} in each bag. How many {obj} does {he} have in total?"),
    ("mul", "There are {a} boxes and each box holds {b} {food}. How many {food} are there in all?"),
    ("mul", "{name} buys {a} packs of {obj}. Each pack has {b} {obj}. How many {obj} does {he} buy?"),
    ("mul", "{name} gives {b} {obj} to each of {a} friends. How many {obj} does {he} give away?"),
    ("mul", "A shelf has {a} rows with {b} {obj} in each row. How many {obj} are on the shelf?"),
    ("mul", "{name} collects {b} {obj} every day for {a} days. How many {obj} does {he} collect?"),
    ("mul", "Each of {a} children has {b} {obj}. How many {obj} do the children have altogether?"),
    ("mul", "{name} fills {a} plates with {b} {food} on each plate. How many {food} are on the plates?"),
]
OPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b}


def template_regex(template):
    """Regex that matches exactly the problems one template can produce; {a} and {b} are captured."""
    pattern = re.escape(template)
    for key in ("name", "name2", "obj", "food", "he", "He", "him"):
        pattern = pattern.replace(re.escape("{" + key + "}"), r"[A-Za-z ]+?")
    pattern = pattern.replace(re.escape("{a}"), r"(?P<a>\d+)", 1).replace(re.escape("{b}"), r"(?P<b>\d+)", 1)
    return re.compile(pattern)


REGEXES = [template_regex(t) for _, t in TEMPLATES]


def solve(prompt):
    """Re-read a problem: return (template index, correct integer answer) from the numbers in the text."""
    hits = [(i, m) for i, rx in enumerate(REGEXES) if (m := rx.fullmatch(prompt))]
    assert len(hits) == 1, f"prompt matches {len(hits)} templates: {prompt!r}"
    i, m = hits[0]
    return i, OPS[TEMPLATES[i][0]](int(m["a"]), int(m["b"]))


def valid_for(op, pair):
    """Can an unordered pair (x <= y) be used by this operation?"""
    x, y = pair
    if op == "mul":
        return y <= MUL_MAX
    if op == "sub":
        return x < y  # a - b with a > b, so the answer is a positive integer
    return True


def split_pairs(rng):
    """Hold out a share of the unordered pairs, separately among small (mul) and large pairs."""
    pairs = [(x, y) for x in range(NUM_MIN, NUM_MAX + 1) for y in range(x, NUM_MAX + 1)]
    train, held = [], []
    for part in ([p for p in pairs if p[1] <= MUL_MAX], [p for p in pairs if p[1] > MUL_MAX]):
        rng.shuffle(part)
        k = round(PAIR_HOLDOUT * len(part))
        held += part[:k]
        train += part[k:]
    return train, held


def split_templates(rng):
    """Hold out about TEMPLATE_HOLDOUT of the templates of every operation."""
    train, held = [], []
    for op in OPS:
        idx = [i for i, (o, _) in enumerate(TEMPLATES) if o == op]
        rng.shuffle(idx)
        k = max(1, round(TEMPLATE_HOLDOUT * len(idx)))
        held += sorted(idx[:k])
        train += sorted(idx[k:])
    return train, held


class Deck:
    """Deal items in shuffled rounds, so every item is used before any repeats."""
    def __init__(self, items, rng):
        self.items, self.rng, self.pile = list(items), rng, []

    def deal(self):
        if not self.pile:
            self.pile = list(self.items)
            self.rng.shuffle(self.pile)
        return self.pile.pop()


def make_rows(template_ids, pairs, n_rows, rng):
    """Build n_rows unique problems, cycling through the templates evenly."""
    tdeck = Deck(template_ids, rng)
    pdecks = {op: Deck([p for p in pairs if valid_for(op, p)], rng) for op in OPS}
    ndeck, odeck, fdeck = Deck(NAMES, rng), Deck(THINGS, rng), Deck(FOODS, rng)
    prompts, rows = set(), []
    while len(rows) < n_rows:
        t = tdeck.deal()
        op, template = TEMPLATES[t]
        x, y = pdecks[op].deal()
        a, b = (y, x) if op == "sub" else rng.choice([(x, y), (y, x)])
        (name, gender), (name2, _) = ndeck.deal(), ndeck.deal()
        if name2 == name:
            continue
        he, him = ("he", "him") if gender == "m" else ("she", "her")
        prompt = template.format(a=a, b=b, name=name, name2=name2, he=he, He=he.capitalize(), him=him,
                                 obj=odeck.deal(), food=fdeck.deal())
        if prompt in prompts:
            continue
        answer = OPS[op](a, b)
        assert solve(prompt) == (t, answer), f"re-solving failed: {prompt!r}"
        assert isinstance(answer, int) and answer >= 0, f"bad answer {answer} for {prompt!r}"
        assert len(prompt.split()) < MAX_WORDS, f"prompt too long: {prompt!r}"
        prompts.add(prompt)
        rows.append({"prompt": prompt, "answer": str(answer), "_t": t, "_op": op, "_pair": (x, y)})
    return rows


def main():
    rng = random.Random(SEED)
    train_t, held_t = split_templates(rng)
    train_p, held_p = split_pairs(rng)
    splits = {"math_train.jsonl": make_rows(train_t, train_p, N_TRAIN, rng),
              "math_eval.jsonl": make_rows(held_t, held_p, N_EVAL, rng)}
    # Leakage guard, checked on the written text: re-solve every train prompt and make sure none
    # comes from an eval template or uses an eval number pair.
    train_rows, eval_rows = splits["math_train.jsonl"], splits["math_eval.jsonl"]
    eval_pairs = {r["_pair"] for r in eval_rows}
    for r in train_rows:
        t, _ = solve(r["prompt"])
        nums = tuple(sorted(int(n) for n in re.findall(r"\d+", r["prompt"])))
        assert t not in held_t, f"eval template in train: {r['prompt']!r}"
        assert nums not in eval_pairs, f"eval number pair in train: {r['prompt']!r}"
    assert {solve(r["prompt"])[0] for r in eval_rows} <= set(held_t)
    for name, rows in splits.items():
        with open(OUT_DIR / name, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"prompt": r["prompt"], "answer": r["answer"]}, ensure_ascii=False) + "\n")
        ops = Counter(r["_op"] for r in rows)
        words = [len(r["prompt"].split()) for r in rows]
        answers = [int(r["answer"]) for r in rows]
        print(f"{name}: {len(rows)} rows, {len(Counter(r['_t'] for r in rows))} templates, "
              + ", ".join(f"{op} {ops[op]}" for op in OPS)
              + f", prompt words {min(words)}-{max(words)}, answers {min(answers)}-{max(answers)}")
    print(f"held out for eval: {len(held_t)} of {len(TEMPLATES)} templates, "
          f"{len(held_p)} of {len(held_p) + len(train_p)} number pairs")


if __name__ == "__main__":
    main()
