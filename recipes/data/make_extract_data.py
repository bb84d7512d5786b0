"""Generate the tiny person-extraction SFT dataset used by the fine-tuning demos.

Task: instruction SFT for structured data extraction. The prompt is a fixed
instruction line, a blank line and one or two short sentences about a person,
phrased in many different ways and word orders, e.g.
    Extract name, age, city and job as JSON.

    Meet Tom Becker from Oslo. He is a 51-year-old carpenter.
The completion is one compact JSON object with exactly these keys, in this
order: ``{"name": str, "age": int, "city": str, "job": str}`` (written with
``json.dumps(obj, ensure_ascii=False)``). Some templates add a distracting
number (years in the job, the year someone moved) so the model has to pick the
age, not just any number. ``parse_check()`` validates a completion.

Held-out split: the fact tables are split, not the rows. About 15% of the first
names, surnames, cities and jobs are reserved for eval, so no eval name, city
or job string appears anywhere in the train file; ages come from the same full
range in both splits. A few phrasing templates are also eval-only, so eval
measures whether extraction generalises to new entities *and* new wordings.

Stdlib only and deterministic. Run from anywhere:
    python recipes/data/make_extract_data.py
It rewrites extract_train.jsonl and extract_eval.jsonl next to this script.
"""
import json
import random
from collections import Counter
from pathlib import Path

SEED = 4321
N_TRAIN, N_EVAL = 300, 40
HOLDOUT_SHARE, AGE_RANGE, MAX_WORDS = 0.15, (18, 70), 45
INSTRUCTION = "Extract name, age, city and job as JSON."
FIELDS = {"name": str, "age": int, "city": str, "job": str}
OUT_DIR = Path(__file__).resolve().parent

FIRST = [("Maria", "f"), ("Tom", "m"), ("Aiko", "f"), ("Lucas", "m"), ("Sofia", "f"), ("Omar", "m"),
    ("Emma", "f"), ("Kenji", "m"), ("Priya", "f"), ("Mateo", "m"), ("Chloé", "f"), ("David", "m"),
    ("Fatima", "f"), ("Jonas", "m"), ("Yuki", "f"), ("Pedro", "m"), ("Hannah", "f"), ("Arjun", "m"),
    ("Nadia", "f"), ("Lars", "m"), ("Elena", "f"), ("Kwame", "m"), ("Ingrid", "f"), ("Rafael", "m"),
    ("Mei", "f"), ("Felix", "m"), ("Amara", "f"), ("Diego", "m"), ("Leila", "f"), ("Noah", "m"),
    ("Zoë", "f"), ("Sven", "m"), ("Grace", "f"), ("Hugo", "m"), ("Olga", "f"), ("Tariq", "m"),
    ("Clara", "f"), ("Marco", "m"), ("Ayesha", "f"), ("Björn", "m"), ("Naomi", "f"), ("Viktor", "m"),
    ("Lucía", "f"), ("Tobias", "m")]
SURNAMES = ["Lopez", "Becker", "Tanaka", "Silva", "Rossi", "Haddad", "Novak", "Sato", "Sharma", "Garcia",
    "Dubois", "Cohen", "Mensah", "Nilsson", "Kowalski", "Müller", "Okafor", "Yamamoto", "Fischer",
    "Costa", "Nguyen", "Patel", "O'Brien", "Jensen", "Moreau", "Schmidt", "Hoffmann", "Hansen",
    "Ferreira", "Castillo", "Horvat", "Bianchi", "Wójcik", "Aziz", "Lindqvist", "Murphy", "Romano",
    "Kovač", "Adeyemi", "Svoboda", "Ortega", "Takahashi", "Walsh", "Petrov"]
CITIES = ["Lisbon", "Oslo", "Osaka", "Berlin", "Madrid", "Toronto", "Nairobi", "Melbourne", "Dublin",
    "Seoul", "Mumbai", "Lyon", "Porto", "Vienna", "Chicago", "Cairo", "Buenos Aires", "São Paulo",
    "Zürich", "Kraków", "Helsinki", "Manila", "Accra", "Istanbul", "Hamburg", "Valencia", "Denver",
    "Auckland", "Glasgow", "Bangkok", "Montreal", "Prague", "Lagos", "Seville", "Copenhagen", "Hanoi",
    "Rotterdam", "Reykjavík", "Bogotá", "Marseille"]
JOBS = ["nurse", "teacher", "carpenter", "architect", "electrician", "chef", "pharmacist", "plumber",
    "accountant", "journalist", "software developer", "photographer", "dentist", "librarian",
    "mechanic", "baker", "lawyer", "translator", "firefighter", "veterinarian", "police officer",
    "graphic designer", "data analyst", "pilot", "florist", "tailor", "farmer", "physiotherapist",
    "bus driver", "civil engineer", "barista", "economist", "painter", "musician", "paramedic",
    "optician", "surveyor", "hairdresser", "bookkeeper", "social worker"]

# {name} {age} {city} {job} {a_job} ("a nurse"/"an architect") {a_age} ("an 18") {He}/{he}
# {n} (years in the job) and {year} (a past year) are distracting numbers, consistent with the age.
TRAIN_TEMPLATES = [
    "{name}, {age}, works as {a_job} in {city}.",
    "Meet {name} from {city}. {He} is {a_age}-year-old {job}.",
    "I'm {name}, {a_job} aged {age} living in {city}.",
    "{name} is {age} years old and lives in {city}, where {he} works as {a_job}.",
    "Age {age}, {name} is {a_job} based in {city}.",
    "My name is {name}. I am {age}, I live in {city} and I work as {a_job}.",
    "{city} resident {name} ({age}) has worked as {a_job} for {n} years.",
    "Name: {name}. Age: {age}. Lives in {city}. Occupation: {job}.",
    "This is {name}, {a_job} from {city}. {He} turned {age} last month.",
    "{name} ({age}) moved to {city} in {year} and now works there as {a_job}.",
    "Our new colleague {name} is {a_job} from {city}, aged {age}.",
]
EVAL_TEMPLATES = [  # held out: never used for train rows
    "In {city}, {age}-year-old {name} earns a living as {a_job}.",
    "{name} here! I'm {age}, I work as {a_job}, and home is {city}.",
    "You will find {name}, {a_job} of {age}, working in {city} since {year}.",
]


def parse_check(completion: str) -> dict:
    """json.loads a completion and assert it has exactly the 4 fields, in order, with the right types."""
    obj = json.loads(completion)
    assert isinstance(obj, dict), f"not a JSON object: {completion!r}"
    assert list(obj) == list(FIELDS), f"wrong fields {list(obj)} in {completion!r}"
    for key, typ in FIELDS.items():
        value = obj[key]
        assert isinstance(value, typ) and not isinstance(value, bool), f"{key} is not {typ.__name__}"
        assert typ is int or value.strip(), f"empty {key}"
    return obj


def split_table(table, rng):
    """Shuffle a copy of a table and return (train part, held-out part)."""
    items = list(table)
    rng.shuffle(items)
    k = max(2, round(HOLDOUT_SHARE * len(items)))
    return items[k:], items[:k]


class Deck:
    """Deal table items in shuffled rounds, so every item is used before any repeats."""
    def __init__(self, items, rng):
        self.items, self.rng, self.pile = list(items), rng, []

    def deal(self):
        if not self.pile:
            self.pile = list(self.items)
            self.rng.shuffle(self.pile)
        return self.pile.pop()


def make_rows(tables, templates, n_rows, rng):
    """Build n_rows rows with unique full names and unique prompts."""
    decks = {key: Deck(items, rng) for key, items in tables.items()}
    tdeck = Deck(range(len(templates)), rng)
    names, prompts, rows = set(), set(), []
    while len(rows) < n_rows:
        (first, gender), surname = decks["first"].deal(), decks["surname"].deal()
        name = f"{first} {surname}"
        if name in names:
            continue
        age, city, job, t = rng.randint(*AGE_RANGE), decks["city"].deal(), decks["job"].deal(), tdeck.deal()
        he = "he" if gender == "m" else "she"
        text = templates[t].format(
            name=name, age=age, city=city, job=job, he=he, He=he.capitalize(),
            a_job=("an " if job[0] in "aeio" else "a ") + job,
            a_age=("an " if age in (11, 18) or str(age)[0] == "8" else "a ") + str(age),
            n=rng.randint(2, age - 16), year=rng.randint(2024 - min(age - 17, 19), 2023))
        prompt = f"{INSTRUCTION}\n\n{text}"
        if prompt in prompts:
            continue
        completion = json.dumps({"name": name, "age": age, "city": city, "job": job}, ensure_ascii=False)
        assert parse_check(completion) == {"name": name, "age": age, "city": city, "job": job}
        assert len(prompt.split()) <= MAX_WORDS, f"prompt too long: {prompt!r}"
        names.add(name)
        prompts.add(prompt)
        rows.append({"prompt": prompt, "completion": completion, "_t": t})
    return rows


def main():
    rng = random.Random(SEED)
    train, held = {}, {}
    for key, table in {"first": FIRST, "surname": SURNAMES, "city": CITIES, "job": JOBS}.items():
        train[key], held[key] = split_table(table, rng)
    splits = {"extract_train.jsonl": make_rows(train, TRAIN_TEMPLATES, N_TRAIN, rng),
              "extract_eval.jsonl": make_rows(held, EVAL_TEMPLATES, N_EVAL, rng)}
    # Leakage guard: no held-out string may occur (case-insensitively) anywhere in the train file.
    train_text = "\n".join(r["prompt"] + "\n" + r["completion"] for r in splits["extract_train.jsonl"]).lower()
    held_strings = [f for f, _ in held["first"]] + held["surname"] + held["city"] + held["job"]
    leaks = [s for s in held_strings if s.lower() in train_text]
    assert not leaks, f"held-out strings leak into train: {leaks}"
    for name, rows in splits.items():
        with open(OUT_DIR / name, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"prompt": r["prompt"], "completion": r["completion"]}, ensure_ascii=False) + "\n")
        words = [len(r["prompt"].split()) for r in rows]
        print(f"{name}: {len(rows)} rows, {len(Counter(r['_t'] for r in rows))} templates, "
              f"prompt words {min(words)}-{max(words)}")
    print("held out for eval: " + ", ".join(f"{len(v)} {k}" for k, v in held.items())
          + f", {len(EVAL_TEMPLATES)} templates")


if __name__ == "__main__":
    main()
