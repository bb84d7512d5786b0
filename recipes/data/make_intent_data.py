"""Generate the tiny smart-home *intent classification* dataset used by the demos.

Each row is a short user utterance (4-16 words) and one of six labels:

* ``set_alarm``            -- an alarm at a clock time, or "wake me up at ..."
* ``timer``                -- a countdown for a duration ("a timer for 10 minutes")
* ``play_music``           -- songs, artists, genres, playlists
* ``weather``              -- forecasts, rain, temperature, umbrellas, jackets
* ``add_to_shopping_list`` -- groceries and household items to buy
* ``smart_lights``         -- on/off, dimming and colours of the lights in a room

``set_alarm`` and ``timer`` share words on purpose ("set a ... for seven"), so a
model must tell clock times from durations rather than spot a keyword; rooms
also appear in music rows and foods in timer rows. Utterances vary: greetings,
polite suffixes, all-lowercase rows, dropped punctuation and a few typos.

Held-out split: ~25% of every intent's templates and ~25% of every slot table
(times, durations, songs, artists, cities, items, rooms, colours, ...) go to
eval only. Eval rows are held-out templates filled with held-out values, so no
eval text appears in train and eval measures generalisation, not memorisation.

Stdlib only and deterministic. Run from anywhere:
    python recipes/data/make_intent_data.py
It rewrites intent_train.jsonl and intent_eval.jsonl next to this script.
"""
import json
import random
import string
from collections import Counter
from pathlib import Path

SEED = 4321
N_TRAIN, N_EVAL = 320, 80
HOLDOUT_SHARE, TYPO_SHARE = 0.25, 0.06
MIN_SHARE, MAX_SHARE = 0.12, 0.22
OUT_DIR = Path(__file__).resolve().parent

SHARES = {"play_music": 0.20, "set_alarm": 0.18, "weather": 0.18,
          "add_to_shopping_list": 0.16, "smart_lights": 0.15, "timer": 0.13}
TEMPLATES = {
    "set_alarm": ["Set an alarm for {time}.", "Wake me up at {time} {day}.", "I need an alarm at {time} {day}.",
        "Can you get me up at {time} {day}?", "Alarm for {time} {day}, please.", "Make sure I'm up by {time} {day}.",
        "Set my alarm to {time}.", "I have to be up at {time} {day}, set an alarm.", "Wake-up call at {time} {day}.",
        "Could you set an alarm for {time} {day}?", "I want to wake up at {time} {day}.",
        "Set an alarm for {time} {day} so I don't oversleep."],
    "timer": ["Set a timer for {dur}.", "Start the timer for {dur}.", "Start a countdown for {dur}.",
        "Time {dur} for the {thing}.", "Timer for the {thing}, {dur} please.", "Can you time {dur} for me?",
        "I need a timer, {dur}.", "Put a timer on for {dur}.", "Count down {dur} for my {thing}.",
        "Tell me when {dur} is up, it's for the {thing}.", "Buzz me in {dur}, the {thing} should be done.",
        "Set a timer for {dur} for the {thing}."],
    "play_music": ["Play something by {artist}.", "Put on {song}.", "I want to hear some {genre}.",
        "Can you play {song}?", "Shuffle my {genre} playlist.", "Play some {genre} in the {room}.",
        "Queue up {song} next.", "I'm in the mood for {artist}.", "Start my {genre} playlist please.",
        "Throw on some {artist} in the {room}.", "Play {song} on repeat.", "Blast some {genre} in the {room}."],
    "weather": ["What's the weather in {city} {when}?", "Will it rain in {city} {when}?",
        "Do I need an umbrella {when}?", "How hot will it be in {city} {when}?", "What's the forecast for {city}?",
        "Is it going to snow {when}?", "How cold is it going to be {when}?", "Is it sunny in {city} right now?",
        "Should I bring a jacket to {city} {when}?", "Any chance of storms in {city} {when}?",
        "What's the temperature in {city} {when}?", "Is it going to be windy {when}?"],
    "add_to_shopping_list": ["Add {item} to my shopping list.", "Put {item} on the grocery list.",
        "We're out of {item}, add it to the list.", "I need to buy {item}.", "Can you add {item} and {item2} to my list?",
        "Shopping list: {item} and {item2}.", "Don't let me forget {item} next time I shop.",
        "Stick {item} on the list for me.", "We need more {item}, put it on the list.",
        "Remind me to pick up {item} at the store.", "Put {item} on my list for the supermarket.",
        "Add {item} and {item2} to the groceries."],
    "smart_lights": ["Turn on the {room} lights at {pct}.", "Turn off the {room} lights.",
        "Dim the {room} lights to {pct}.", "Make the {room} lights {colour}.", "Set the lights to {colour}.",
        "Switch the {room} lamp off.", "Can you brighten the {room} a bit?", "Change the {room} lights to {colour}.",
        "Lights to {pct} in the {room}.", "It's too dark in the {room}, lights on please.",
        "Set the {room} brightness to {pct}.", "Give me some {colour} light in the {room}."],
}
SLOTS = {
    "time": ["6 am", "6:30 am", "7:15", "5:45 am", "8 o'clock", "half past six", "quarter to seven", "noon", "9 pm",
             "10:30 pm", "7am", "4:50 in the morning", "six thirty", "seven", "11:00", "5 pm", "8:45",
             "a quarter past five", "5:20 am", "6 sharp"],
    "day": ["tomorrow", "on Monday", "every weekday", "on Saturday", "this Friday", "every day", "on Sunday morning",
            "tomorrow morning"],
    "dur": ["5 minutes", "10 minutes", "ten minutes", "an hour", "half an hour", "90 seconds", "45 seconds", "25 mins",
            "1 hour and 15 minutes", "three minutes", "20 min", "two hours", "12 minutes", "a minute and a half",
            "40 minutes", "seven minutes", "15 minutes", "30 seconds", "three hours", "eight minutes"],
    "thing": ["eggs", "pasta", "laundry", "oven", "tea", "pizza", "rice", "workout", "nap", "bread", "cookies", "roast"],
    "artist": ["Taylor Swift", "Miles Davis", "Daft Punk", "Adele", "Bob Marley", "Beyoncé", "Radiohead",
               "Ed Sheeran", "Fleetwood Mac", "Kendrick Lamar", "Nina Simone", "Coldplay"],
    "song": ["Bohemian Rhapsody", "Hey Jude", "Blinding Lights", "Dancing Queen", "Clair de Lune", "Hotel California",
             "Billie Jean", "Wonderwall", "Shape of You", "Purple Rain", "Take Five", "Despacito"],
    "genre": ["jazz", "lo-fi", "classical", "rock", "hip hop", "country", "reggae", "disco", "ambient", "k-pop",
              "blues", "90s pop"],
    "city": ["London", "Paris", "Tokyo", "New York", "Berlin", "Sydney", "Chicago", "Madrid", "Toronto", "Seattle",
             "Mumbai", "Dublin", "Cape Town", "Oslo", "Lisbon", "São Paulo"],
    "when": ["today", "tomorrow", "this weekend", "tonight", "on Friday", "this afternoon", "next week",
             "tomorrow morning"],
    "item": ["milk", "eggs", "bread", "bananas", "coffee beans", "oat milk", "paper towels", "toothpaste", "olive oil",
             "apples", "butter", "cheddar", "dish soap", "tomatoes", "onions", "yogurt", "cereal", "batteries",
             "tea bags", "spinach"],
    "room": ["living room", "kitchen", "bedroom", "bathroom", "hallway", "office", "garage", "kids' room",
             "dining room", "porch", "basement", "guest room", "laundry room", "attic", "nursery", "patio"],
    "colour": ["warm white", "blue", "red", "purple", "green", "soft orange", "pink", "daylight", "teal", "yellow",
               "cool white", "amber"],
    "pct": ["10%", "20 percent", "50%", "half", "75 percent", "30%", "a quarter", "40%"],
}
PREFIXES = ["Hey, ", "Hi, ", "Ok so ", "Quick one: ", "Hey assistant, ", "Um, "]
SUFFIXES = [" Thanks!", " Thank you.", " Pls.", " Cheers.", " Thx"]


def split_list(items, rng):
    """Shuffle a copy and split it into (train part, held-out part)."""
    items = list(items)
    rng.shuffle(items)
    k = max(2, round(HOLDOUT_SHARE * len(items)))
    return items[k:], items[:k]


def typo(text, rng):
    """Swap two adjacent letters or drop one letter in a random word of 4+ letters."""
    words = text.split(" ")
    idx = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if idx:
        i = rng.choice(idx)
        w, j = words[i], rng.randrange(1, len(words[i]) - 1)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:] if rng.random() < 0.5 else w[:j] + w[j + 1:]
    return " ".join(words)


def utterance(template, slots, rng):
    """Fill a template from the slot pools; return (core text, text with casual/casing/typo variants)."""
    values = {}
    for _, field, _, _ in string.Formatter().parse(template):
        if field:
            pool = [v for v in slots[field.rstrip("2")] if v not in values.values()]
            values[field] = rng.choice(pool)
    core = " ".join(template.format(**values).split())
    text = core[0].upper() + core[1:]
    if rng.random() < 0.25:  # keep "I"/"I'm" capitalised after a prefix
        text = rng.choice(PREFIXES) + (text if text.split()[0] in ("I", "I'm") else text[0].lower() + text[1:])
    if rng.random() < 0.2 and "please" not in core:  # no "please ... Pls."
        text += rng.choice(SUFFIXES)
    if rng.random() < 0.3:  # casual: all lowercase, no final punctuation
        text = text.lower().rstrip(".?!")
    if rng.random() < TYPO_SHARE:
        text = typo(text, rng)
    return core, text


def class_counts(n):
    """Per-label row counts for a split of n rows (the last label takes the remainder)."""
    counts = {label: round(share * n) for label, share in SHARES.items()}
    counts[list(SHARES)[-1]] += n - sum(counts.values())
    return counts


def make_rows(templates, slots, n_rows, rng, forbidden=frozenset()):
    """Cover every template once per label, then top up at random; no duplicate texts, and a filled
    template (core) repeats with other variants only once fresh cores get hard to find."""
    rows, seen, cores = [], set(forbidden), set()
    for label, n in class_counts(n_rows).items():
        got, tries = 0, 0
        while got < n:
            tries += 1
            assert tries < 5000, f"cannot make {n} distinct {label} rows"
            tpl = templates[label][got] if got < len(templates[label]) else rng.choice(templates[label])
            core, text = utterance(tpl, slots, rng)
            key = text.lower().rstrip(".?!")
            if key in seen or not 4 <= len(text.split()) <= 16 or (core in cores and tries < 1000):
                continue
            seen.add(key)
            cores.add(core)
            rows.append({"text": text, "label": label})
            got += 1
    rng.shuffle(rows)
    return rows


def report(name, rows):
    counts = Counter(r["label"] for r in rows)
    print(f"{name}: {len(rows)} rows")
    for label in SHARES:
        share = counts[label] / len(rows)
        print(f"  {label:<22} {counts[label]:>4}  {100 * share:4.1f}%")
        assert MIN_SHARE <= share <= MAX_SHARE, f"{name}: {label} share {share:.1%} out of bounds"


def main():
    rng = random.Random(SEED)
    train_tpl, eval_tpl, train_slots, eval_slots = {}, {}, {}, {}
    for table, train_part, eval_part in ((TEMPLATES, train_tpl, eval_tpl), (SLOTS, train_slots, eval_slots)):
        for key, values in table.items():
            train_part[key], eval_part[key] = split_list(values, rng)
    train = make_rows(train_tpl, train_slots, N_TRAIN, rng)
    evals = make_rows(eval_tpl, eval_slots, N_EVAL, rng, {r["text"].lower().rstrip(".?!") for r in train})
    assert set(r["label"] for r in evals) <= set(r["label"] for r in train) == set(SHARES)
    for name, rows in {"intent_train.jsonl": train, "intent_eval.jsonl": evals}.items():
        report(name, rows)
        with open(OUT_DIR / name, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
