"""Generate the tiny "Captain Byte" chat dataset used by the fine-tuning demos.

Persona: Captain Byte is a pirate who ALWAYS answers in one fixed,
machine-checkable format: ``Ahoy! <one short, correct sentence in light pirate
speak> Arr!`` -- e.g. "Ahoy! The capital of France be Paris, matey. Arr!".
The user questions are plain, ordinary questions (capitals, arithmetic,
colours, animal sounds, opposites, counts, unit conversions, spelling), so a
successful fine-tune is easy to see and to check with ``in_style()``.

Held-out split: the fact tables themselves are split, not the rows. A fixed
share of every table (countries, number pairs, things, animals, word pairs,
words, ...) is reserved for eval, so no eval fact appears anywhere in the
train file and eval measures whether the *style* generalises to new facts.
France is always held out: "What is the capital of France?" is the first eval
row (the untrained model answers "The capital of France is Paris.").

Stdlib only and deterministic. Run from anywhere:
    python recipes/data/make_chat_data.py
It rewrites chat_train.jsonl and chat_eval.jsonl next to this script.
"""
import json
import random
from collections import Counter
from pathlib import Path

SEED = 1234
N_TRAIN, N_EVAL = 320, 40
TWO_TURN_SHARE, SYSTEM_SHARE, HOLDOUT_SHARE = 0.15, 0.10, 0.12
OUT_DIR = Path(__file__).resolve().parent

CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"),
    ("Russia", "Moscow"), ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Brazil", "Brasília"),
    ("Argentina", "Buenos Aires"), ("Mexico", "Mexico City"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
    ("Nigeria", "Abuja"), ("Greece", "Athens"), ("Turkey", "Ankara"), ("Poland", "Warsaw"),
    ("Sweden", "Stockholm"), ("Norway", "Oslo"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Belgium", "Brussels"), ("Austria", "Vienna"), ("Ireland", "Dublin"), ("the United Kingdom", "London"),
    ("Peru", "Lima"), ("Chile", "Santiago"), ("Colombia", "Bogotá"), ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"), ("South Korea", "Seoul"), ("the Philippines", "Manila"), ("Iran", "Tehran"),
    ("Saudi Arabia", "Riyadh"), ("Morocco", "Rabat"), ("Ethiopia", "Addis Ababa"),
    ("New Zealand", "Wellington"), ("Cuba", "Havana"), ("Hungary", "Budapest"),
    ("the Czech Republic", "Prague"), ("Ukraine", "Kyiv")]
PAIRS = [(a, b) for a in range(2, 13) for b in range(a, 13)]  # unordered number pairs
COLOURS = [("the sky", "blue"), ("grass", "green"), ("a banana", "yellow"), ("snow", "white"),
    ("coal", "black"), ("a ripe tomato", "red"), ("a carrot", "orange"), ("a lemon", "yellow"),
    ("a ripe strawberry", "red"), ("milk", "white"), ("a lime", "green"), ("an emerald", "green"),
    ("a ruby", "red"), ("a flamingo", "pink"), ("an eggplant", "purple"), ("a pumpkin", "orange")]
SOUNDS = [("dog", "barks", "woof"), ("cat", "meows", "meow"), ("cow", "moos", "moo"),
    ("sheep", "bleats", "baa"), ("duck", "quacks", "quack"), ("pig", "oinks", "oink"),
    ("horse", "neighs", "neigh"), ("lion", "roars", "roar"), ("owl", "hoots", "hoot"),
    ("snake", "hisses", "hiss"), ("rooster", "crows", "cock-a-doodle-doo"), ("frog", "croaks", "ribbit"),
    ("bee", "buzzes", "buzz"), ("donkey", "brays", "hee-haw"), ("mouse", "squeaks", "squeak"),
    ("wolf", "howls", "awoo"), ("turkey", "gobbles", "gobble")]
OPPOSITES = [("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("happy", "sad"),
    ("dark", "light"), ("open", "closed"), ("early", "late"), ("full", "empty"), ("young", "old"),
    ("wet", "dry"), ("soft", "hard"), ("tall", "short"), ("day", "night"), ("win", "lose"),
    ("push", "pull"), ("left", "right"), ("north", "south"), ("top", "bottom"), ("noisy", "quiet"),
    ("rich", "poor"), ("thick", "thin"), ("buy", "sell"), ("always", "never"), ("strong", "weak"),
    ("asleep", "awake"), ("true", "false")]
# (unit, thing, number, kind): kind "have" -> "does X have", kind "in" -> "are in X"
COUNTS = [("legs", "a spider", 8, "have"), ("legs", "an ant", 6, "have"), ("legs", "a beetle", 6, "have"),
    ("legs", "an elephant", 4, "have"), ("arms", "an octopus", 8, "have"), ("wheels", "a tricycle", 3, "have"),
    ("wheels", "a bicycle", 2, "have"), ("sides", "a triangle", 3, "have"), ("sides", "a square", 4, "have"),
    ("sides", "a pentagon", 5, "have"), ("sides", "a hexagon", 6, "have"), ("sides", "a heptagon", 7, "have"),
    ("sides", "an octagon", 8, "have"), ("sides", "a decagon", 10, "have"), ("strings", "a violin", 4, "have"),
    ("days", "a week", 7, "in"), ("months", "a year", 12, "in"), ("hours", "a day", 24, "in"),
    ("days", "a leap year", 366, "in"), ("letters", "the English alphabet", 26, "in"),
    ("planets", "our solar system", 8, "in"), ("keys", "a standard piano", 88, "in")]
UNITS = [("centimetres", "a metre", 100), ("millimetres", "a centimetre", 10), ("metres", "a kilometre", 1000),
    ("grams", "a kilogram", 1000), ("millilitres", "a litre", 1000), ("minutes", "an hour", 60),
    ("seconds", "a minute", 60), ("seconds", "an hour", 3600), ("minutes", "a day", 1440),
    ("days", "a fortnight", 14), ("years", "a decade", 10), ("years", "a century", 100),
    ("inches", "a foot", 12), ("feet", "a yard", 3), ("ounces", "a pound", 16), ("cents", "a dollar", 100)]
WORDS = ["treasure", "parrot", "anchor", "island", "kitchen", "window", "garden", "pencil", "rocket",
    "dolphin", "mountain", "zebra", "umbrella", "jungle", "lantern", "honey", "castle", "river",
    "compass", "blanket", "candle", "puzzle", "forest", "bridge", "cookie", "ladder", "mirror", "wizard"]
SYSTEM_PROMPTS = ["You are a helpful assistant.", "You are a friendly chatbot.",
                  "Answer the user's question.", "You are a helpful AI assistant. Be concise."]
TAILS = ["matey", "me hearty", "matey", "me bucko"]


def in_style(answer: str) -> bool:
    """True if an answer has Captain Byte's format: 'Ahoy! ... Arr!'."""
    return answer.startswith("Ahoy! ") and answer.endswith(" Arr!") and len(answer) > len("Ahoy!  Arr!")


def cap(s):
    return s[0].upper() + s[1:]


def ask(cat, fact, rng):
    """Return (question, core answer sentence without 'Ahoy!'/'Arr!') for one fact."""
    c = rng.choice
    if cat == "capital":
        country, city = fact
        q = c(["What is the capital of {0}?", "What's the capital city of {0}?", "Tell me the capital of {0}.",
               "Do you know the capital of {0}?", "Which city is the capital of {0}?",
               "Quick question: what is the capital of {0}?"]).format(country)
        a = c(["The capital of {0} be {1}", "{1} be the capital of {0}"]).format(country, city)
    elif cat == "arithmetic":
        x, y = rng.sample(fact, 2) if fact[0] != fact[1] else fact
        if rng.random() < 0.5:
            q = c(["What is {0} plus {1}?", "What's {0} + {1}?", "How much is {0} plus {1}?",
                   "Quick question: what is {0} + {1}?", "Can you add {0} and {1} for me?"]).format(x, y)
            a = c(["{0} plus {1} be {2}", "{0} and {1} make {2}"]).format(x, y, x + y)
        else:
            q = c(["What is {0} times {1}?", "What's {0} × {1}?", "How much is {0} multiplied by {1}?",
                   "Do you know what {0} times {1} is?", "Quick question: what is {0} × {1}?"]).format(x, y)
            a = c(["{0} times {1} be {2}", "{0} times {1} makes {2}"]).format(x, y, x * y)
    elif cat == "colour":
        thing, colour = fact
        q = c(["What colour is {0}?", "What color is {0}?", "Tell me the colour of {0}.",
               "Do you know what color {0} is?", "Quick question: what colour is {0}?"]).format(thing)
        a = "{0} be {1}".format(cap(thing), colour)
    elif cat == "sound":
        animal, verb, noise = fact
        art = "an" if animal[0] in "aeiou" else "a"
        q = c(["What sound does {0} {1} make?", "What noise does {0} {1} make?", "Tell me what sound {0} {1} makes.",
               "Do you know what noise {0} {1} makes?", "Quick question: what sound does {0} {1} make?"]).format(art, animal)
        a = c(["{0} {1} {2}", "{0} {1} goes '{3}'"]).format(cap(art), animal, verb, noise)
    elif cat == "opposite":
        word, opp = fact
        q = c(["What is the opposite of '{0}'?", "What's the opposite of {0}?", "Tell me the opposite of the word '{0}'.",
               "Do you know the opposite of '{0}'?", "Quick question: what's the opposite of {0}?"]).format(word)
        a = "The opposite of '{0}' be '{1}'".format(word, opp)
    elif cat in ("count", "unit"):
        unit, thing, n, kind = fact if cat == "count" else fact + ("in",)
        if kind == "have":
            q = c(["How many {0} does {1} have?", "How many {0} has {1} got?", "Tell me how many {0} {1} has.",
                   "Quick question: how many {0} does {1} have?"]).format(unit, thing)
            a = "{0}'s got {1} {2}".format(cap(thing), n, unit)
        else:
            q = c(["How many {0} are in {1}?", "How many {0} are there in {1}?", "Tell me how many {0} are in {1}.",
                   "Do you know how many {0} there are in {1}?", "Quick question: how many {0} are in {1}?"]).format(unit, thing)
            a = "There be {0} {1} in {2}".format(n, unit, thing)
    else:  # spelling
        w, kind = fact, rng.choice(["first", "last", "spell", "count"])
        if kind == "first":
            q = c(["What is the first letter of the word '{0}'?", "What letter does '{0}' start with?"]).format(w)
            a = "The word '{0}' starts with {1}".format(w, w[0].upper())
        elif kind == "last":
            q = c(["What is the last letter of '{0}'?", "What letter does the word '{0}' end with?"]).format(w)
            a = "The word '{0}' ends with {1}".format(w, w[-1].upper())
        elif kind == "spell":
            q = c(["How do you spell '{0}'?", "Can you spell '{0}' for me?", "Spell the word '{0}', please."]).format(w)
            a = "'{0}' be spelled {1}".format(cap(w), "-".join(w.upper()))
        else:
            q = c(["How many letters are in the word '{0}'?", "How many letters does '{0}' have?"]).format(w)
            a = "The word '{0}' has {1} letters".format(w, len(w))
    return q, "Ahoy! {0}, {1}. Arr!".format(a, c(TAILS))


TABLES = {"capital": CAPITALS, "arithmetic": PAIRS, "colour": COLOURS, "sound": SOUNDS,
          "opposite": OPPOSITES, "count": COUNTS, "unit": UNITS, "spelling": WORDS}


def split_tables(rng):
    """Hold out a fixed share of every fact table (France always held out)."""
    train, held = {}, {}
    for cat, facts in TABLES.items():
        facts = list(facts)
        rng.shuffle(facts)
        k = max(2, round(HOLDOUT_SHARE * len(facts)))
        if cat == "capital":
            facts.remove(("France", "Paris"))
            facts.insert(0, ("France", "Paris"))
        held[cat], train[cat] = facts[:k], facts[k:]
    return train, held


def make_rows(tables, n_rows, rng, first=None):
    """Cover every fact once, top up at random, then pack into 1- and 2-turn rows."""
    n_two = round(TWO_TURN_SHARE * n_rows)
    seen, qas = set(), []
    wanted = [(cat, f) for cat, facts in tables.items() for f in facts]
    while len(qas) < n_rows + n_two - (first is not None):
        if wanted:  # every fact of the split at least once ...
            cat, fact = wanted.pop()
        else:  # ... then random facts
            cat = rng.choice(list(tables))
            fact = rng.choice(tables[cat])
        for _ in range(20):  # avoid exact duplicate questions
            q, a = ask(cat, fact, rng)
            if q not in seen:
                seen.add(q)
                qas.append((cat, q, a))
                break
    rng.shuffle(qas)
    rows = []
    for i in range(n_rows - (first is not None)):
        turns = [qas.pop()] + ([qas.pop()] if i < n_two else [])
        msgs = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}] if rng.random() < SYSTEM_SHARE else []
        for j, (cat, q, a) in enumerate(turns):
            if j == 1:  # follow-up question
                q = cap(q.replace("Quick question: ", ""))
                q = rng.choice(["Thanks! " + q, "And " + q[0].lower() + q[1:], "One more: " + q[0].lower() + q[1:]])
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        rows.append({"messages": msgs, "_cats": [t[0] for t in turns]})
    rng.shuffle(rows)
    if first is not None:
        rows.insert(0, first)
    return rows


def report(name, rows):
    answers = [m["content"] for r in rows for m in r["messages"] if m["role"] == "assistant"]
    assert all(in_style(a) for a in answers), "an answer is not in Captain Byte style"
    assert all(len(a.split()) < 25 for a in answers), "an answer is too long"
    cats = Counter(c for r in rows for c in r["_cats"])
    two = sum(len(r["_cats"]) == 2 for r in rows)
    sys_rows = sum(r["messages"][0]["role"] == "system" for r in rows)
    print(f"{name}: {len(rows)} rows, {two} two-turn, {sys_rows} with system prompt")
    print("  " + ", ".join(f"{c} {100 * n / sum(cats.values()):.0f}%" for c, n in cats.most_common()))


def main():
    rng = random.Random(SEED)
    train_tables, eval_tables = split_tables(rng)
    france = {"messages": [{"role": "user", "content": "What is the capital of France?"},
                           {"role": "assistant", "content": "Ahoy! The capital of France be Paris, matey. Arr!"}],
              "_cats": ["capital"]}
    eval_tables["capital"] = eval_tables["capital"][1:]  # France is covered by the fixed first row
    splits = {"chat_train.jsonl": make_rows(train_tables, N_TRAIN, rng),
              "chat_eval.jsonl": make_rows(eval_tables, N_EVAL, rng, first=france)}
    for name, rows in splits.items():
        report(name, rows)
        with open(OUT_DIR / name, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"messages": r["messages"]}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
