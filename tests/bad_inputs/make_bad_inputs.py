"""Write the bad-input corpus: one file per case, each with good rows around one bad row (or a whole
bad file), for tests/test_bad_inputs.py (which writes the cases too big to keep in git: a 1 MB row,
a line nested a hundred thousand levels deep). Deterministic (the stdlib, and pyarrow for Parquet);
rerun after changing a case:

    python tests/bad_inputs/make_bad_inputs.py
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

USER, BOT = {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Ahoy!"}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def call(name, arguments):
    return {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
                                                                 "function": {"name": name, "arguments": arguments}}]}


GOOD = {
    "chat": {"messages": [USER, BOT]},
    "instruct": {"prompt": "Hi", "completion": "{\"a\": 1}"},
    "pretrain": {"text": "Some text."},
    "classify": {"text": "play jazz", "label": "a"},
    "grpo": {"prompt": "What is 2 + 2?", "answer": "4"},
    "tools": {"tools": [WEATHER], "messages": [{"role": "user", "content": "Weather in Oslo?"},
                                               call("get_weather", {"city": "Oslo"}),
                                               {"role": "tool", "name": "get_weather", "content": "{\"c\": 3}"},
                                               {"role": "assistant", "content": "3 degrees."}]},
    "dpo": {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"},
    "kto": {"prompt": "What is 2 + 2?", "completion": "4", "label": True},
}

# name -> bad row (a dict, or a raw line as str/bytes); the bad row is always line 3
ROWS = {
    "chat__broken_json": '{"messages": [{"role": "user", "content": "Hi?"}',
    "chat__wrong_column": {"conversation": [USER, BOT]},
    "chat__messages_not_a_list": {"messages": "Hi?"},
    "chat__unknown_role": {"messages": [USER, {"role": "pirate", "content": "Arr"}, BOT]},
    "chat__content_not_a_string": {"messages": [{"role": "user", "content": 42}, BOT]},
    "chat__empty_answer": {"messages": [USER, {"role": "assistant", "content": "  "}]},
    "chat__no_user": {"messages": [BOT]},
    "chat__row_not_an_object": "[1, 2, 3]",
    "chat__not_utf8": b'{"messages": [{"role": "user", "content": "caf\xe9?"}, {"role": "assistant", "content": "Ahoy!"}]}',
    "instruct__completion_missing": {"prompt": "Hi"},
    "instruct__prompt_not_a_string": {"prompt": ["Hi"], "completion": "x"},
    "instruct__empty_prompt": {"prompt": "", "completion": "x"},
    "instructjson__completion_not_json": {"prompt": "Hi", "completion": "not json"},
    "pretrain__empty_text": {"text": "   "},
    "pretrain__wrong_column": {"body": "Some text."},
    "pretrain__text_not_a_string": {"text": 12},
    "classify__label_not_a_string": {"text": "play jazz", "label": 3},
    "classify__empty_text": {"text": "", "label": "a"},
    "classifyset__label_outside_the_set": {"text": "play jazz", "label": "c"},
    "grpo__prompt_missing": {"question": "What is 2 + 2?", "answer": "4"},
    "grpo__empty_prompt": {"prompt": " ", "answer": "4"},
    "grpo__message_without_content": {"prompt": [{"role": "user"}], "answer": "4"},
    "grpo__prompt_a_number": {"prompt": 7, "answer": "4"},
    "tools__call_to_undefined_tool": {**GOOD["tools"], "messages": [GOOD["tools"]["messages"][0],
                                                                   call("get_time", {"city": "Oslo"})]},
    "tools__arguments_break_the_schema": {**GOOD["tools"], "messages": [GOOD["tools"]["messages"][0],
                                                                       call("get_weather", {"city": 5})]},
    "tools__arguments_not_json": {**GOOD["tools"], "messages": [GOOD["tools"]["messages"][0],
                                                               call("get_weather", "{city: Oslo")]},
    "tools__tool_result_without_a_call": {**GOOD["tools"], "messages": [
        {"role": "user", "content": "Hi"}, {"role": "tool", "content": "{}"}, {"role": "assistant", "content": "Hi"}]},
    "tools__tools_missing": {"messages": GOOD["tools"]["messages"]},
    "tools__unknown_role": {**GOOD["tools"], "messages": [{"role": "robot", "content": "Hi"}, BOT]},
    "dpo__same_replies": {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "4"},
    "dpo__rejected_missing": {"prompt": "What is 2 + 2?", "chosen": "4"},
    "kto__label_not_a_boolean": {"prompt": "What is 2 + 2?", "completion": "4", "label": "yes"},
    "kto__completion_missing": {"prompt": "What is 2 + 2?", "label": True},
    "chat__reasoning_on_a_user_turn": {"messages": [{**USER, "reasoning_content": "Hmm."}, BOT]},
    "chat__reasoning_not_a_string": {"messages": [USER, {**BOT, "thinking": ["Hmm."]}]},
    "instruct__reasoning_not_a_string": {"prompt": "Hi", "completion": "x", "reasoning_content": 5},
    "instruct__reasoning_twice": {"prompt": "Hi", "completion": "x", "reasoning_content": "a", "thinking": "b"},
    "chat__lone_surrogate": {"messages": [{"role": "user", "content": "Hi \ud800?"}, BOT]},  # written as \\ud800
    "chat__nul_character": {"messages": [{"role": "user", "content": "Hi\u0000?"}, BOT]},
    "chat__nul_bytes": b'{"messages": [{"role": "user", "content": "Hi\x00?"}, {"role": "assistant", "content": "Ahoy!"}]}',
    "chat__zero_width_answer": {"messages": [USER, {"role": "assistant", "content": "\u200b\u200d\u2060"}]},
    "pretrain__zero_width_text": {"text": "\ufeff\u200b \u200c"},
    "chat__nested_too_deeply": '{"messages": ' + "[" * 150 + "]" * 150 + "}",
}


def line(value) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else json.dumps(value)).encode()


CSV = {  # name -> the file's text; the bad row's line is in tests/test_bad_inputs.py
    "classify__csv_missing_column": "text,lable\nplay jazz,a\nrain today?,b\nlights off,a\n",
    "classify__csv_header_only": "text,label\n",
    "classify__csv_empty_cell": "text,label\nplay jazz,a\n,b\nlights off,a\n",
    # a quoted cell spans lines 2-3, so the empty cell below is on line 5, not 4
    "classify__csv_empty_cell_after_a_multiline_cell": 'text,label\n"play\nsome jazz",a\nrain today?,b\n,a\n',
    "classify__csv_cell_count": "text,label\nplay jazz,a\nrain today?,b,c\n",
    "classify__csv_header_twice": "text,text,label\nplay jazz,x,a\n",
}
CLASSIFY = [{"text": "play jazz", "label": "a"}, {"text": "rain today?", "label": "b"}]
PARQUET = {  # name -> rows (pyarrow types each column from its values)
    "classify__parquet_null_text": [*CLASSIFY, {"text": None, "label": "a"}],
    "classify__parquet_labels_are_numbers": [{"text": "play jazz", "label": 0}, {"text": "rain today?", "label": 1}],
}


def main(out: Path = HERE):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for old in out.glob("*.*"):
        if old.suffix in (".jsonl", ".json", ".csv", ".parquet"):
            old.unlink()
    for name, bad in ROWS.items():
        good = GOOD[name.split("__")[0].removesuffix("json").removesuffix("set")]
        other = {**good, "label": "b" if isinstance(good["label"], str) else not good["label"]} if "label" in good \
            else good  # a second class, or an undesirable reply beside a desirable one
        lines = [line(good), line(other), line(bad), line(good), line(other)]
        (out / f"{name}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (out / "chat__empty_file.jsonl").write_text("\n\n")
    (out / "kto__all_desirable.jsonl").write_text((json.dumps(GOOD["kto"]) + "\n") * 5)
    (out / "chat__utf16_file.jsonl").write_bytes((json.dumps(GOOD["chat"]) + "\n").encode("utf-16"))
    (out / "chat__json_not_a_list.json").write_text(json.dumps({"messages": [USER, BOT]}))
    for name, text in CSV.items():
        (out / f"{name}.csv").write_text(text)
    (out / "classify__csv_not_utf8.csv").write_bytes(b"text,label\nplay jazz,a\ncaf\xe9?,b\n")
    for name, rows in PARQUET.items():
        pq.write_table(pa.Table.from_pylist(rows), out / f"{name}.parquet")
    whole = (out / "classify__parquet_null_text.parquet").read_bytes()
    (out / "classify__parquet_cut_short.parquet").write_bytes(whole[: len(whole) // 2])  # a copy that stopped


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
