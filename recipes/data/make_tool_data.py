"""Generate the tiny function-calling dataset used by the tool-use fine-tuning demo.

Format: TRL / OpenAI conversational tool calling. Every row is
``{"tools": [...], "messages": [...]}``. ``tools`` offers 2-4 of the four
JSON-schema functions below (always the one that gets called), in varied
order. A tool row has four short messages:
    user      "What's the weather like in Oslo?"
    assistant content "" + tool_calls [{"type": "function", "function":
              {"name": "get_weather", "arguments": {"city": "Oslo"}}}]
    tool      name "get_weather", content '{"temperature": 4, "unit": "celsius", ...}'
    assistant "It's 4°C and rainy in Oslo right now."
``arguments`` is a JSON object (not a string). About 10% of the rows need no
tool (a joke, small talk, a simple fact): user -> plain assistant answer.
``check_row()`` validates a row, including every call's arguments against the
offered tool's schema with a tiny stdlib checker (``schema_errors()``: types,
enums, required keys, no unknown keys; plus the YYYY-MM-DD / HH:MM formats).

Held-out split: the slot tables are split, not the rows. About 25% of the
places (each a city with its own IANA time zone, used by get_weather and
get_time), of the unit pairs, of the event titles, of the no-tool questions and
of the user phrasings of every tool are eval-only, so no eval city, time zone,
unit pair, title or phrasing appears anywhere in the train file and eval
measures whether tool calling generalises to new values *and* new wordings.

Stdlib only and deterministic. Run from anywhere:
    python recipes/data/make_tool_data.py
It rewrites tools_train.jsonl and tools_eval.jsonl next to this script.
"""
import datetime
import json
import random
import re
from collections import Counter
from pathlib import Path

SEED = 8080
N_TRAIN, N_EVAL = 300, 40
NO_TOOL_SHARE, HOLDOUT_SHARE, MAX_WORDS = 0.10, 0.25, 25
OUT_DIR = Path(__file__).resolve().parent


def fn(name, description, properties, required):
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


TOOLS = {t["function"]["name"]: t for t in [
    fn("get_weather", "Get the current weather in a city.",
       {"city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"}},
       ["city"]),
    fn("convert_units", "Convert a value from one unit to another.",
       {"value": {"type": "number", "description": "The value to convert"},
        "from_unit": {"type": "string", "description": "Unit to convert from, e.g. miles"},
        "to_unit": {"type": "string", "description": "Unit to convert to, e.g. kilometers"}},
       ["value", "from_unit", "to_unit"]),
    fn("create_event", "Create a calendar event.",
       {"title": {"type": "string", "description": "Event title"},
        "date": {"type": "string", "description": "Date in YYYY-MM-DD format"},
        "time": {"type": "string", "description": "Start time in HH:MM (24-hour) format"}},
       ["title", "date"]),
    fn("get_time", "Get the current local time in a time zone.",
       {"timezone": {"type": "string", "description": "IANA time zone, e.g. Europe/Paris"}},
       ["timezone"]),
]}
FORMATS = {"date": r"\d{4}-\d{2}-\d{2}", "time": r"\d{2}:\d{2}"}  # argument name -> required format

# Places: each city is the city of its own IANA zone, so get_weather and get_time share one table.
# Paris is always a train place (the tool descriptions use it as their example).
ZONES = ["Europe/Paris", "Europe/London", "Europe/Berlin", "Europe/Madrid", "Europe/Amsterdam",
    "Europe/Vienna", "Europe/Stockholm", "Europe/Oslo", "Europe/Helsinki",
    "Europe/Warsaw", "Europe/Prague", "Europe/Athens", "Europe/Lisbon", "Europe/Dublin",
    "Europe/Zurich", "Europe/Istanbul", "Asia/Tokyo", "Asia/Seoul", "Asia/Shanghai", "Asia/Singapore",
    "Asia/Dubai", "Asia/Bangkok", "Asia/Manila", "Asia/Jakarta", "Asia/Karachi", "Africa/Cairo",
    "Africa/Nairobi", "Africa/Lagos", "Africa/Johannesburg", "America/New_York", "America/Chicago",
    "America/Denver", "America/Los_Angeles", "America/Toronto", "America/Mexico_City", "America/Lima",
    "America/Bogota", "America/Santiago", "America/Sao_Paulo", "Australia/Sydney", "Australia/Perth",
    "Pacific/Auckland", "Asia/Kolkata"]
PLACES = [(z.split("/")[1].replace("_", " "), z) for z in ZONES]  # (city, timezone)
# (from_unit, to_unit, factor or function, sensible value range)
C_TO_F, F_TO_C = (lambda v: v * 9 / 5 + 32), (lambda v: (v - 32) * 5 / 9)
UNIT_PAIRS = [("kilometers", "miles", 0.621371, (2, 100)), ("miles", "kilometers", 1.609344, (2, 100)),
    ("kilograms", "pounds", 2.204623, (2, 100)), ("pounds", "kilograms", 0.453592, (2, 200)),
    ("meters", "feet", 3.28084, (2, 100)), ("feet", "meters", 0.3048, (2, 100)),
    ("celsius", "fahrenheit", C_TO_F, (2, 40)), ("fahrenheit", "celsius", F_TO_C, (32, 104)),
    ("liters", "gallons", 0.264172, (2, 50)), ("gallons", "liters", 3.785412, (2, 20)),
    ("inches", "centimeters", 2.54, (2, 60)), ("centimeters", "inches", 1 / 2.54, (2, 200)),
    ("grams", "ounces", 0.035274, (10, 500)), ("ounces", "grams", 28.349523, (2, 32)),
    ("hours", "minutes", 60, (2, 48)), ("minutes", "seconds", 60, (2, 90)),
    ("kilometers", "meters", 1000, (2, 50)), ("meters", "centimeters", 100, (2, 50)),
    ("days", "hours", 24, (2, 30)), ("cups", "milliliters", 236.588, (2, 8)),
    ("yards", "meters", 0.9144, (2, 100)), ("miles", "feet", 5280, (2, 10)),
    ("liters", "milliliters", 1000, (2, 20)), ("weeks", "days", 7, (2, 52))]
TITLES = ["Team meeting", "Dentist appointment", "Yoga class", "Lunch with Maria", "Project review",
    "Doctor visit", "Birthday party", "Book club", "Piano lesson", "Gym session", "Coffee with Sam",
    "Job interview", "Parent meeting", "Car service", "Movie night", "Haircut", "Football practice",
    "Budget planning", "Dinner with Alex", "Study group", "Flight to Rome", "Code review",
    "Vet appointment", "Guitar lesson", "Sales call", "Garden work", "Swimming lesson",
    "Board meeting", "Call with Mom", "Team lunch", "Design workshop", "Spanish class"]
NO_TOOL = [("Tell me a joke.", "Why did the scarecrow win an award? Because he was outstanding in his field!"),
    ("What is 2+2?", "2 + 2 = 4."),
    ("Hi! How are you?", "I'm doing well, thanks! How can I help you today?"),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("How do you say thank you in Spanish?", "In Spanish, thank you is \"gracias\"."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("Give me a synonym for happy.", "A synonym for happy is \"joyful\"."),
    ("Thanks for your help!", "You're welcome! Happy to help."),
    ("What colour is the sky?", "On a clear day the sky is blue."),
    ("Who wrote Romeo and Juliet?", "Romeo and Juliet was written by William Shakespeare."),
    ("What is 10 minus 3?", "10 minus 3 is 7."),
    ("What is the largest planet?", "Jupiter is the largest planet in our solar system."),
    ("Tell me a fun fact.", "Octopuses have three hearts."),
    ("What can you do?", "I can check the weather and the time, convert units and create calendar events."),
    ("Say hello in French.", "Bonjour!"),
    ("How many legs does a spider have?", "A spider has eight legs.")]

PHRASES = {
    "get_weather": ["What's the weather like in {city}?", "How's the weather in {city} today?",
        "Is it cold in {city} right now?", "Tell me the weather in {city}.", "What's the temperature in {city}?",
        "Can you check the weather in {city} for me?", "Weather in {city}, please.",
        "I'm heading to {city}. What's the weather there?"],
    "convert_units": ["Convert {v} {src} to {dst}.", "How many {dst} is {v} {src}?", "What is {v} {src} in {dst}?",
        "Can you convert {v} {src} into {dst}?", "I have {v} {src}. How much is that in {dst}?",
        "{v} {src} to {dst}, please.", "Please change {v} {src} to {dst}.", "How much is {v} {src} in {dst}?"],
    "create_event": ['Create an event "{title}" on {date}{at}.', 'Add "{title}" to my calendar on {date}{at}.',
        'Schedule "{title}" for {date}{at}.', 'Put "{title}" in my calendar for {date}{at}.',
        "Please book {title} on {date}{at}.", 'Can you set up "{title}" on {date}{at}?',
        'Remind me: "{title}" on {date}{at}.', "New event: {title}, {date}{at}."],
    "get_time": ["What time is it in {city}?", "What's the current time in {city}?", "Tell me the time in {city}.",
        "What time is it in the {tz} time zone?", "Can you check the local time in {city}?",
        "I need the current time for {tz}.", "What's the time right now in {city}?",
        "Do you know what time it is in {city}?"],
}
UNIT_ASKS = ["Please use {unit}.", "Give me the temperature in {unit}.", "In {unit}, please."]
CONDITIONS = ["sunny", "cloudy", "rainy", "windy", "foggy", "partly cloudy", "clear"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December"]


def schema_errors(args, schema):
    """Tiny JSON-schema check for a flat object: types, enum, required, no unknown keys, formats."""
    if not isinstance(args, dict):
        return ["arguments is not an object"]
    props, errors = schema["properties"], []
    errors += [f"missing required {k!r}" for k in schema["required"] if k not in args]
    errors += [f"unknown argument {k!r}" for k in args if k not in props]
    types = {"string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,)}
    for k, v in args.items():
        if k not in props:
            continue
        want = props[k]["type"]
        if not isinstance(v, types[want]) or (want != "boolean" and isinstance(v, bool)):
            errors.append(f"{k!r} should be {want}, got {type(v).__name__}")
        elif "enum" in props[k] and v not in props[k]["enum"]:
            errors.append(f"{k!r}={v!r} not in {props[k]['enum']}")
        elif want == "string" and not v.strip():
            errors.append(f"{k!r} is empty")
        elif k in FORMATS and not re.fullmatch(FORMATS[k], v):
            errors.append(f"{k!r}={v!r} is not in the right format")
    if not errors and "date" in args:
        datetime.date.fromisoformat(args["date"])  # raises on a non-existent date
    if not errors and "time" in args:
        hh, mm = map(int, args["time"].split(":"))
        assert hh < 24 and mm < 60, f"bad time {args['time']!r}"
    return errors


def check_row(row):
    """Assert a row's invariants; return the called tool name (or None)."""
    assert set(row) == {"tools", "messages"}
    offered = [t["function"]["name"] for t in row["tools"]]
    assert 2 <= len(offered) <= 4 and len(set(offered)) == len(offered), f"bad tool list {offered}"
    assert all(row["tools"][i] == TOOLS[name] for i, name in enumerate(offered)), "tool definition changed"
    msgs, called = row["messages"], None
    assert msgs[0]["role"] == "user" and msgs[-1]["role"] == "assistant" and "tool_calls" not in msgs[-1]
    assert msgs[-1]["content"].strip() and len(msgs[-1]["content"].split()) <= MAX_WORDS
    assert len(msgs[0]["content"].split()) <= MAX_WORDS, f"user message too long: {msgs[0]['content']!r}"
    if len(msgs) == 4:
        call_msg, tool_msg = msgs[1], msgs[2]
        assert call_msg["role"] == "assistant" and call_msg["content"] == "" and len(call_msg["tool_calls"]) == 1
        call = call_msg["tool_calls"][0]
        assert call["type"] == "function" and set(call["function"]) == {"name", "arguments"}
        called = call["function"]["name"]
        assert called in offered, f"{called} is not offered in this row"
        errors = schema_errors(call["function"]["arguments"], TOOLS[called]["function"]["parameters"])
        assert not errors, f"{called} arguments {call['function']['arguments']}: {errors}"
        assert tool_msg["role"] == "tool" and tool_msg["name"] == called, "tool message does not match the call"
        assert isinstance(tool_msg["content"], str) and isinstance(json.loads(tool_msg["content"]), dict)
    else:
        assert len(msgs) == 2 and set(msgs[1]) == {"role", "content"}, f"bad message layout: {msgs}"
    return called


def num(x):
    """A JSON number: int when whole, else rounded to 2 decimals."""
    x = round(x, 2)
    return int(x) if x == int(x) else x


def split_table(table, rng, keep=None):
    """Shuffle a copy of a table and return (train part, held-out part); `keep` stays in train."""
    items = [x for x in table if x != keep]
    rng.shuffle(items)
    k = max(2, round(HOLDOUT_SHARE * len(table)))
    return items[k:] + ([keep] if keep is not None else []), items[:k]


class Deck:
    """Deal items in shuffled rounds, so every item is used before any repeats."""
    def __init__(self, items, rng):
        self.items, self.rng, self.pile = list(items), rng, []

    def deal(self):
        if not self.pile:
            self.pile = list(self.items)
            self.rng.shuffle(self.pile)
        return self.pile.pop()


def clock(rng):
    """A random start time as (HH:MM argument, how the user says it)."""
    hh, mm = rng.randint(7, 21), rng.choice([0, 0, 15, 30, 30, 45])
    arg = f"{hh:02d}:{mm:02d}"
    if rng.random() < 0.6:
        return arg, arg
    h12 = hh - 12 if hh > 12 else hh
    said = f"{h12} {'pm' if hh >= 12 else 'am'}" if mm == 0 else f"{h12}:{mm:02d} {'pm' if hh >= 12 else 'am'}"
    return arg, said


def tool_turn(name, decks, rng):
    """Return (user text, arguments, result dict, final answer) for one call of one tool."""
    phrase = decks["phrase_" + name].deal()
    if name == "get_weather":
        city, _ = decks["place"].deal()
        args, user = {"city": city}, phrase.format(city=city)
        if rng.random() < 0.35:
            args["unit"] = rng.choice(["celsius", "fahrenheit"])
            user += " " + rng.choice(UNIT_ASKS).format(unit=args["unit"].capitalize())
        unit = args.get("unit", "celsius")
        c = rng.randint(-5, 34)
        temp = c if unit == "celsius" else round(C_TO_F(c))
        cond = rng.choice(CONDITIONS if c > 2 else CONDITIONS + ["snowy", "snowy"])
        result = {"city": city, "temperature": temp, "unit": unit, "condition": cond}
        deg = f"{temp}°{unit[0].upper()}"
        final = rng.choice([f"It's {deg} and {cond} in {city} right now.",
                            f"Right now {city} is {cond} at {deg}.", f"{city}: {cond}, {deg}."])
        return user, args, result, final, [str(temp)]
    if name == "convert_units":
        src, dst, f, (lo, hi) = decks["units"].deal()
        v = rng.randint(lo, hi) if rng.random() < 0.8 else rng.randint(lo, hi - 1) + 0.5
        args = {"value": v, "from_unit": src, "to_unit": dst}
        r = num(f(v) if callable(f) else v * f)
        exact = r == (f(v) if callable(f) else v * f)
        result = {"value": r, "unit": dst}
        final = rng.choice([f"{v} {src} is {'' if exact else 'about '}{r} {dst}.",
                            f"That's {'' if exact else 'about '}{r} {dst}."])
        return phrase.format(v=v, src=src, dst=dst), args, result, final, [str(r)]
    if name == "create_event":
        title = decks["title"].deal()
        day = datetime.date(2025, 1, 1) + datetime.timedelta(days=rng.randint(0, 729))
        said_date = day.isoformat() if rng.random() < 0.6 else f"{MONTHS[day.month - 1]} {day.day}, {day.year}"
        args = {"title": title, "date": day.isoformat()}
        at, at_final = "", ""
        if rng.random() < 0.7:
            args["time"], said = clock(rng)
            at, at_final = f" at {said}", f" at {args['time']}"
        result = {"status": "created", "event_id": rng.randint(100, 999), "title": title}
        final = rng.choice([f'Done! "{title}" is on your calendar for {day.isoformat()}{at_final}.',
                            f'I\'ve added "{title}" on {day.isoformat()}{at_final}.'])
        return phrase.format(title=title, date=said_date, at=at), args, result, final, [title]
    city, tz = decks["place"].deal()
    now = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
    result = {"timezone": tz, "time": now}
    final = rng.choice([f"It's {now} in {city} right now.", f"The current time in {city} is {now}."])
    return phrase.format(city=city, tz=tz), {"timezone": tz}, result, final, [now]


def offer(called, rng):
    """2-4 tool definitions in random order, always including the called tool (if any)."""
    others = [n for n in TOOLS if n != called]
    k = rng.randint(2, 4) - (called is not None)
    names = rng.sample(others, k) + ([called] if called else [])
    rng.shuffle(names)
    return [TOOLS[n] for n in names]


def make_rows(tables, n_rows, rng):
    decks = {key: Deck(items, rng) for key, items in tables.items()}
    n_plain = round(NO_TOOL_SHARE * n_rows)
    kinds = [None] * n_plain + [list(TOOLS)[i % len(TOOLS)] for i in range(n_rows - n_plain)]
    rng.shuffle(kinds)
    rows, users = [], Counter()
    for kind in kinds:
        for _ in range(50):  # prefer unique user messages
            if kind is None:
                user, answer = decks["no_tool"].deal()
                msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
            else:
                user, args, result, final, used = tool_turn(kind, decks, rng)
                msgs = [{"role": "user", "content": user},
                        {"role": "assistant", "content": "", "tool_calls": [
                            {"type": "function", "function": {"name": kind, "arguments": args}}]},
                        {"role": "tool", "name": kind, "content": json.dumps(result, ensure_ascii=False)},
                        {"role": "assistant", "content": final}]
                assert all(u in final and u in msgs[2]["content"] for u in used), "answer ignores the result"
            if kind is None or users[user] == 0:
                break
        users[user] += 1
        row = {"tools": offer(kind, rng), "messages": msgs}
        assert check_row(row) == kind
        rows.append(row)
    return rows


def slot_values(rows):
    """Everything a row's calls depend on: cities, time zones, unit pairs, titles."""
    out = set()
    for r in rows:
        for m in r["messages"]:
            for call in m.get("tool_calls", []):
                a = call["function"]["arguments"]
                out |= {("city", a.get("city")), ("timezone", a.get("timezone")), ("title", a.get("title")),
                        ("units", (a.get("from_unit"), a.get("to_unit")))}
    return out - {("city", None), ("timezone", None), ("title", None), ("units", (None, None))}


def main():
    rng = random.Random(SEED)
    train, held = {}, {}
    tables = {"place": PLACES, "units": UNIT_PAIRS, "title": TITLES, "no_tool": NO_TOOL}
    tables.update({"phrase_" + name: PHRASES[name] for name in TOOLS})
    for key, table in tables.items():
        keep = ("Paris", "Europe/Paris") if key == "place" else None
        train[key], held[key] = split_table(table, rng, keep)
    splits = {"tools_train.jsonl": make_rows(train, N_TRAIN, rng), "tools_eval.jsonl": make_rows(held, N_EVAL, rng)}
    # Leakage guards: no eval slot value in any train call, and no held-out city, zone or title string
    # (case-insensitively) nor held-out no-tool question anywhere in the train file.
    tr, ev = splits["tools_train.jsonl"], splits["tools_eval.jsonl"]
    assert not slot_values(tr) & slot_values(ev), f"eval slot values in train: {slot_values(tr) & slot_values(ev)}"
    train_text = "\n".join(json.dumps(r, ensure_ascii=False) for r in tr).lower()
    held_strings = [s for c, z in held["place"] for s in (c, z)] + held["title"] + [q for q, _ in held["no_tool"]]
    leaks = [s for s in held_strings if s.lower() in train_text]
    assert not leaks, f"held-out strings leak into train: {leaks}"
    train_users = {r["messages"][0]["content"] for r in tr}
    assert not train_users & {r["messages"][0]["content"] for r in ev}, "an eval user message is in train"
    for name, rows in splits.items():
        with open(OUT_DIR / name, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        kinds = Counter(check_row(r) or "no tool" for r in rows)
        offered = Counter(len(r["tools"]) for r in rows)
        print(f"{name}: {len(rows)} rows, " + ", ".join(f"{k} {n}" for k, n in kinds.most_common())
              + "; tools offered " + ", ".join(f"{k}: {offered[k]}" for k in sorted(offered)))
    print("held out for eval: " + ", ".join(f"{len(v)} {k}" for k, v in held.items()))


if __name__ == "__main__":
    main()
