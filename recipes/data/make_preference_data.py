"""Generate the tiny *preference* dataset ("just the answer, and the right one") used by the DPO demo.

Every row is a simple question and two replies, as plain strings:
    {"prompt": "How many minutes are in 3 hours?", "chosen": "180 minutes",
     "rejected": "3 hours is 180 minutes."}
The preference is a terse quick-answer assistant's: the *chosen* reply is always the correct answer
alone (a number with its unit, or a word). The *rejected* reply is one of:

* ``sentence``  -- the correct answer in a full sentence ("3 hours is 180 minutes."). SmolLM2-Instruct
                   itself prefers these, so this kind is what the model must learn: before training it
                   prefers the chosen reply on about half the held-out pairs;
* ``wrong``     -- a wrong answer in the chosen format ("7 legs" for a beetle), so this kind teaches
                   correctness (the two replies differ only in the answer);
* ``verbose``   -- a rambling answer (opener, filler, hedged answer, closer) with the correct value;
* ``refusal``   -- declines to answer;
* ``off_topic`` -- talks about something unrelated.

Questions come from five categories: arithmetic (plus, minus, times), unit conversions, capital
cities, opposites and everyday counts (legs, sides, wheels, ...). The preference is objective: a
reply is good if it is at most three words and holds the right answer, which ``is_good_answer``
checks on any text (generated replies included). Replies are short (chosen at most 3 words,
rejected at most 42) so a prompt + reply stays well under 128 tokens with the SmolLM2 chat template.

Held-out split: the tables are split, not the rows. About 25% of every category's question
templates, 25% of every fact table (number pairs, unit/amount combinations, countries, word pairs,
counted things) and 25% of every filler pool used to build rejected replies (openers, fillers,
hedges, closers, refusals, off-topic lines) are eval-only. Eval rows are held-out templates filled
with held-out facts and rejected with held-out fillers, so no eval question, fact or rejected
sentence appears in the train file and eval measures whether the preference generalises.

Stdlib only and deterministic. Run from anywhere:
    python recipes/data/make_preference_data.py
It rewrites pref_train.jsonl and pref_eval.jsonl next to this script.
"""
import json
import random
import re
import string
from collections import Counter
from pathlib import Path

SEED = 5150
N_TRAIN, N_EVAL = 240, 40
HOLDOUT_SHARE = 0.25
MAX_CHOSEN_WORDS, MAX_REJECTED_WORDS = 3, 42
OUT_DIR = Path(__file__).resolve().parent

CATEGORY_SHARES = {"arithmetic": 0.25, "units": 0.20, "capitals": 0.20, "counts": 0.20, "opposites": 0.15}
KIND_SHARES = {"sentence": 0.45, "wrong": 0.25, "verbose": 0.15, "refusal": 0.075, "off_topic": 0.075}

# Question templates per category. Placeholders are filled from the category's facts.
TEMPLATES = {
    "arithmetic": ["What is {a} {op} {b}?", "How much is {a} {op} {b}?", "Calculate {a} {sym} {b}.",
        "What is {a} {sym} {b}?", "Quick one: {a} {op} {b}?", "Can you work out {a} {op} {b}?",
        "What do you get for {a} {op} {b}?", "Tell me what {a} {sym} {b} equals."],
    "units": ["How many {small} are in {n} {big}?", "Convert {n} {big} to {small}.", "What is {n} {big} in {small}?",
        "{n} {big} is how many {small}?", "How many {small} make {n} {big}?", "Please turn {n} {big} into {small}.",
        "Tell me how many {small} there are in {n} {big}.", "If I have {n} {big}, how many {small} is that?"],
    "capitals": ["What is the capital of {country}?", "What's the capital city of {country}?",
        "Which city is the capital of {country}?", "Name the capital of {country}.",
        "Do you know the capital of {country}?", "Tell me the capital of {country}.",
        "What city serves as the capital of {country}?", "I forgot the capital of {country}. What is it?"],
    "counts": ["How many {unit} does {thing} have?", "Tell me how many {unit} {thing} has.",
        "How many {unit} has {thing} got?", "Quick question: how many {unit} does {thing} have?",
        "Do you know how many {unit} {thing} has?", "Count the {unit} of {thing} for me.",
        "What is the number of {unit} {thing} has?", "I wonder how many {unit} {thing} has. Do you know?"],
    "opposites": ["What is the opposite of {word}?", "What's the opposite of '{word}'?",
        "Give me the opposite of {word}.", "What word means the opposite of {word}?",
        "Tell me the antonym of {word}.", "What is the antonym of '{word}'?",
        "Which word is the opposite of {word}?", "I need the opposite of the word {word}."],
}
SENTENCE = {  # the full sentence a "sentence" rejected reply uses; {v} is the answer
    "arithmetic": "{a} {op} {b} is {v}.",
    "units": "{n} {big} is {v} {small}.",
    "capitals": "The capital of {country} is {v}.",
    "counts": "{Thing} has {v} {unit}.",
    "opposites": "The opposite of {word} is {v}.",
}

OPS = {"plus": ("+", lambda a, b: a + b), "minus": ("-", lambda a, b: a - b), "times": ("x", lambda a, b: a * b)}
UNITS = [("meters", "centimeters", 100), ("kilometers", "meters", 1000), ("hours", "minutes", 60),
    ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7), ("years", "months", 12),
    ("kilograms", "grams", 1000), ("liters", "milliliters", 1000), ("feet", "inches", 12),
    ("centimeters", "millimeters", 10), ("yards", "feet", 3)]
UNIT_AMOUNTS = range(2, 11)
CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("Russia", "Moscow"), ("Canada", "Ottawa"),
    ("Australia", "Canberra"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Greece", "Athens"),
    ("Turkey", "Ankara"), ("Poland", "Warsaw"), ("Sweden", "Stockholm"), ("Norway", "Oslo"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Belgium", "Brussels"), ("Austria", "Vienna"),
    ("Ireland", "Dublin"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"), ("South Korea", "Seoul"), ("Iran", "Tehran"), ("Cuba", "Havana"),
    ("Hungary", "Budapest"), ("Argentina", "Buenos Aires"), ("Mexico", "Mexico City"),
    ("the Netherlands", "Amsterdam"), ("Switzerland", "Bern"), ("Iceland", "Reykjavik"),
    ("Indonesia", "Jakarta"), ("Ukraine", "Kyiv"), ("Morocco", "Rabat"), ("Colombia", "Bogota"),
    ("India", "New Delhi")]
COUNTS = [("a spider", "legs", 8), ("a dog", "legs", 4), ("a cat", "legs", 4), ("a horse", "legs", 4),
    ("a chicken", "legs", 2), ("a duck", "legs", 2), ("an ant", "legs", 6), ("a bee", "legs", 6),
    ("a beetle", "legs", 6), ("a cow", "legs", 4), ("a triangle", "sides", 3), ("a square", "sides", 4),
    ("a pentagon", "sides", 5), ("a hexagon", "sides", 6), ("an octagon", "sides", 8), ("a rectangle", "sides", 4),
    ("a bicycle", "wheels", 2), ("a tricycle", "wheels", 3), ("a car", "wheels", 4), ("a unicycle", "wheels", 1),
    ("a human hand", "fingers", 5), ("a week", "days", 7), ("a year", "months", 12), ("a cube", "faces", 6),
    ("a die", "faces", 6), ("a decade", "years", 10), ("a century", "years", 100),
    ("a fortnight", "days", 14), ("a chess board", "squares", 64)]
OPPOSITES = [("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("happy", "sad"),
    ("light", "dark"), ("open", "closed"), ("early", "late"), ("full", "empty"), ("hard", "soft"),
    ("wet", "dry"), ("loud", "quiet"), ("tall", "short"), ("thick", "thin"), ("rich", "poor"),
    ("strong", "weak"), ("clean", "dirty"), ("push", "pull"), ("win", "lose"), ("true", "false"),
    ("inside", "outside"), ("left", "right"), ("day", "night"), ("north", "south"), ("east", "west"),
    ("first", "last"), ("buy", "sell"), ("remember", "forget"), ("always", "never"), ("top", "bottom"),
    ("asleep", "awake"), ("begin", "end"), ("friend", "enemy"), ("cheap", "expensive"),
    ("arrive", "leave")]

# Pieces of rejected replies. A verbose reply is OPENER + FILLER + HEDGE (with the right answer) + CLOSER.
OPENERS = ["Great question!", "Ah, what an interesting thing to ask.", "Oh, I love questions like this one.",
    "Hmm, let me think about this for a moment.", "Well, many people wonder about that.",
    "What a fun question to think about!", "Okay, so this is a good one.", "Thanks for asking, happy to help.",
    "Interesting, I was just thinking about this.", "Ooh, this one is a classic.", "Right, let me see here.",
    "Good thing you asked me about this."]
FILLERS = ["There are a few ways to look at it, and each has its merits.",
    "It is always worth stepping back to consider the bigger picture.",
    "People sometimes get confused by this, so it helps to go slowly.",
    "I want to be careful here, because the details really matter.",
    "Let's consider what the question is really asking before answering.",
    "This kind of thing comes up more often than you might expect.",
    "Honestly, it took me a while to get used to questions like this.",
    "I could talk about this topic for hours, to be fair.",
    "Before I answer, a little background might be useful.",
    "Some say it is simple, but I think it deserves some thought.",
    "Let me walk through my reasoning step by step, slowly.",
    "It reminds me of something I read a long time ago."]
HEDGES = ["After all that, I think the answer is {v}.", "If I had to pick, I would say {v}.",
    "So, as far as I can tell, it is {v}.", "The answer should be {v}, I believe.",
    "Putting it all together, my answer is {v}.", "In the end, it comes out to {v}, probably.",
    "My best guess would be {v}.", "So I am fairly sure it is {v}."]
CLOSERS = ["I hope that helps!", "Let me know if you have other questions!", "You may want to double-check that.",
    "Feel free to ask me anything else.", "Anyway, that is my take on it.", "Hope this was useful to you!",
    "Happy to explain more if you like.", "Thanks again for such a nice question!"]
REFUSALS = ["I'm sorry, but I can't help with that.", "I'd rather not answer that question.",
    "Sorry, that's not something I'm able to answer.", "I don't think I should answer that. Try asking someone else.",
    "Unfortunately, I can't provide an answer to this.", "That's outside what I can help with, sorry.",
    "I'm not able to answer questions like this one.", "I'm afraid I can't say.",
    "I prefer not to get into that, sorry.", "Sorry, I can't answer that at the moment.",
    "That isn't a question I can answer for you.", "I'll have to pass on that one."]
OFF_TOPIC = ["Did you know that honey never spoils? Bees are amazing.",
    "I really enjoy rainy afternoons with a good book and a cup of tea.",
    "Speaking of which, have you ever tried baking bread at home?",
    "Let's talk about something else. What's your favorite movie?",
    "The ocean covers most of our planet, and much of it is unexplored.",
    "My favorite season is autumn, when the leaves change color.",
    "Have you heard the new song everyone is talking about? It's catchy.",
    "Cats sleep for most of the day, which sounds quite nice to me.",
    "I think gardening is a wonderful hobby for relaxing on weekends.",
    "Pizza was first made in Italy, and now people eat it everywhere.",
    "Going for a walk in the park is a great way to clear your head.",
    "Penguins can't fly, but they are excellent swimmers."]
POOLS = {"openers": OPENERS, "fillers": FILLERS, "hedges": HEDGES, "closers": CLOSERS,
         "refusals": REFUSALS, "off_topic": OFF_TOPIC}


def split_list(items, rng):
    """Shuffle a copy and split it into (train part, held-out part)."""
    items = list(items)
    rng.shuffle(items)
    k = max(1, round(HOLDOUT_SHARE * len(items)))
    return items[k:], items[:k]


class Deck:
    """Deal items in shuffled rounds, so every item is used before any repeats."""
    def __init__(self, items, rng):
        self.items, self.rng, self.pile = list(items), rng, []

    def deal(self):
        if not self.pile:
            self.pile = list(self.items)
            self.rng.shuffle(self.pile)
        return self.pile.pop()


class GroupDeck:
    """Deal a group in turn (e.g. plus, minus, times), then one of its items, so groups stay balanced."""
    def __init__(self, items, group_of, rng):
        groups = {}
        for item in items:
            groups.setdefault(group_of(item), []).append(item)
        self.groups = Deck(list(groups), rng)
        self.decks = {g: Deck(members, rng) for g, members in groups.items()}

    def deal(self):
        return self.decks[self.groups.deal()].deal()


def all_facts():
    """Every fact per category as (key, slot values, answer). The key names the fact for leakage checks."""
    arithmetic = []
    for op, (sym, fn) in OPS.items():
        hi = 12 if op == "times" else 30
        for a in range(2, hi + 1):
            for b in range(2, hi + 1):
                if (op == "minus" and a <= b) or (op != "minus" and a > b):  # one order per unordered pair
                    continue
                arithmetic.append((("arithmetic", op, a, b), {"a": a, "b": b, "op": op, "sym": sym}, fn(a, b)))
    return {
        "arithmetic": arithmetic,
        "units": [(("units", big, n), {"n": n, "big": big, "small": small}, n * factor)
                  for big, small, factor in UNITS for n in UNIT_AMOUNTS],
        "capitals": [(("capitals", c), {"country": c}, cap) for c, cap in CAPITALS],
        "counts": [(("counts", t, u), {"thing": t, "Thing": t[0].upper() + t[1:], "unit": u}, n) for t, u, n in COUNTS],
        "opposites": [(("opposites", w), {"word": w}, o) for w, o in OPPOSITES],
    }


def fill(template, slots):
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    text = template.format(**{f: slots[f] for f in fields})
    return text[0].upper() + text[1:]


def wrong_value(category, answer, answers, rng):
    """A plausible but wrong answer: a nearby number, or another answer of the same category and split."""
    if isinstance(answer, int):
        deltas = [d for d in (-10, -2, -1, 1, 2, 10) if answer + d > 0]
        if category == "arithmetic" and answer > 20:
            deltas += [-20, 20]
        return answer + rng.choice(deltas)
    return rng.choice([a for a in answers if a != answer])


def short_value(category, slots, v):
    """The answer as a hedged rambling reply states it ("180 minutes", "8 legs", "Paris")."""
    return {"units": f"{v} {slots.get('small', '')}", "counts": f"{v} {slots.get('unit', '')}"}.get(category, str(v))


def rejected_reply(kind, category, slots, answer, answers, pools, rng):
    if kind == "verbose":
        parts = [pools["openers"].deal(), pools["fillers"].deal(),
                 pools["hedges"].deal().format(v=short_value(category, slots, answer))]
        if rng.random() < 0.7:
            parts.append(pools["closers"].deal())
        return " ".join(parts)
    if kind == "wrong":
        return short_value(category, slots, wrong_value(category, answer, answers, rng))
    if kind == "sentence":
        return fill(SENTENCE[category], {**slots, "v": answer})
    return pools["refusals" if kind == "refusal" else "off_topic"].deal()


def counts_for(shares, n):
    """Per-key row counts for n rows (the last key takes the remainder)."""
    counts = {key: round(share * n) for key, share in shares.items()}
    counts[list(shares)[-1]] += n - sum(counts.values())
    return counts


def make_rows(templates, facts, pools, n_rows, rng):
    """n_rows unique prompts, categories and rejection kinds in their shares, cycling facts and templates."""
    pools = {name: Deck(items, rng) for name, items in pools.items()}
    kinds = [k for k, c in counts_for(KIND_SHARES, n_rows).items() for _ in range(c)]
    rng.shuffle(kinds)
    rows, prompts = [], set()
    for category, n in counts_for(CATEGORY_SHARES, n_rows).items():
        fdeck = GroupDeck(facts[category], lambda fact: fact[0][:2], rng)  # arithmetic: balance the ops
        tdeck = Deck(templates[category], rng)
        answers = sorted({str(a) for _, _, a in facts[category]})
        got, tries = 0, 0
        while got < n:
            tries += 1
            assert tries < 5000, f"cannot make {n} distinct {category} rows"
            key, slots, answer = fdeck.deal()
            template = tdeck.deal()
            prompt = fill(template, slots)
            if prompt in prompts:
                continue
            kind = kinds[len(rows)]
            chosen = short_value(category, slots, answer)
            rejected = rejected_reply(kind, category, slots, answer, answers, pools, rng)
            prompts.add(prompt)
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                         "_category": category, "_kind": kind, "_fact": key, "_template": template,
                         "_answer": str(answer)})
            got += 1
    rng.shuffle(rows)
    return rows


def is_good_answer(reply, answer, max_words=MAX_CHOSEN_WORDS):
    """The preference as a check on any reply (e.g. a generated one): the answer alone, at most
    max_words words, and the answer stated -- for a number, the last number in the reply ("10 minus 5 is 5." is right, "10 minus
    5 is 4." is not); for a word, the word anywhere in it (case-insensitive)."""
    if len(reply.split()) > max_words:
        return False
    if answer.isdigit():
        numbers = re.findall(r"\d+", reply.replace(",", ""))
        return bool(numbers) and numbers[-1] == answer
    return re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", reply, re.IGNORECASE) is not None


def check(rows):
    for r in rows:
        assert r["prompt"] and r["chosen"] and r["rejected"] and r["chosen"] != r["rejected"], r
        assert is_good_answer(r["chosen"], r["_answer"]), r
        assert len(r["rejected"].split()) <= MAX_REJECTED_WORDS, r
        assert not is_good_answer(r["rejected"], r["_answer"]), r  # every rejected reply fails the check
        if r["_kind"] == "verbose":
            assert re.search(rf"(?<!\w){re.escape(r['_answer'])}(?!\w)", r["rejected"]), r  # right, but rambling


def main():
    rng = random.Random(SEED)
    train_tpl, eval_tpl, train_facts, eval_facts, train_pools, eval_pools = {}, {}, {}, {}, {}, {}
    for category, templates in TEMPLATES.items():
        train_tpl[category], eval_tpl[category] = split_list(templates, rng)
    for category, facts in all_facts().items():
        train_facts[category], eval_facts[category] = split_list(facts, rng)
    for name, items in POOLS.items():
        train_pools[name], eval_pools[name] = split_list(items, rng)
    train = make_rows(train_tpl, train_facts, train_pools, N_TRAIN, rng)
    evals = make_rows(eval_tpl, eval_facts, eval_pools, N_EVAL, rng)
    check(train + evals)
    # Leakage guard: no eval template, fact or rejected sentence shows up in train.
    train_prompts = {r["prompt"] for r in train}
    train_facts_used = {r["_fact"] for r in train}
    train_templates = {r["_template"] for r in train}
    train_sentences = {s for r in train for s in re.split(r"(?<=[.!?]) ", r["rejected"])}
    for r in evals:
        assert r["prompt"] not in train_prompts and r["_fact"] not in train_facts_used, r
        assert r["_template"] not in train_templates, r
        if r["_kind"] not in ("wrong", "terse"):  # these two are built from the fact, not from a pool
            assert not set(re.split(r"(?<=[.!?]) ", r["rejected"])) & train_sentences, r
    for name, rows in {"pref_train.jsonl": train, "pref_eval.jsonl": evals}.items():
        with open(OUT_DIR / name, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({k: r[k] for k in ("prompt", "chosen", "rejected")}, ensure_ascii=False) + "\n")
        cats, kinds = Counter(r["_category"] for r in rows), Counter(r["_kind"] for r in rows)
        chosen_words = [len(r["chosen"].split()) for r in rows]
        rejected_words = [len(r["rejected"].split()) for r in rows]
        print(f"{name}: {len(rows)} rows; " + ", ".join(f"{c} {cats[c]}" for c in CATEGORY_SHARES)
              + "; rejected: " + ", ".join(f"{k} {kinds[k]}" for k in KIND_SHARES)
              + f"; words chosen {min(chosen_words)}-{max(chosen_words)}, rejected {min(rejected_words)}-{max(rejected_words)}")


if __name__ == "__main__":
    main()
