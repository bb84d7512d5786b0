"""Data loading and validation: every error names the file, the line and the field, the command
exits non-zero, and no run folder is created."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fasttune.cli import main
from fasttune.data.load import load_rows, load_splits, split_rows
from fasttune.data.validate import check_rows
from fasttune.errors import DataError
from fasttune.tasks import ChatSFT

GOOD = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Ahoy! Hi. Arr!"}]}


def write_jsonl(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


BAD_ROWS = {
    "missing column": ({"text": "hello"}, "field_line:3: messages: missing (this row has: text)"),
    "no assistant": ({"messages": [{"role": "user", "content": "Hi?"}]},
                     "field_line:3: messages: no assistant message"),
    "unknown role": ({"messages": [{"role": "user", "content": "Hi?"}, {"role": "pirate", "content": "Arr"},
                                   {"role": "assistant", "content": "Ahoy!"}]},
                     "field_line:3: messages[1].role: unknown role 'pirate'"),
    "malformed json": ('{"messages": [{"role": "user", "content": "Hi?"}', "field_line:3: not valid JSON"),
    "content not a string": ({"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]},
                             "field_line:3: messages[0].content: must be a string, got int"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_is_named_by_file_line_and_field(case, tmp_path, write_recipe):
    bad, expected = BAD_ROWS[case]
    data = write_jsonl(tmp_path / "chat.jsonl", [GOOD, GOOD, bad, GOOD, GOOD])
    recipe = write_recipe(str(data))
    result = CliRunner().invoke(main, ["run", str(recipe)])
    assert result.exit_code == 2, result.output
    assert expected.replace("field_line", str(data)) in result.output
    assert not (tmp_path / "runs").exists(), "a run folder was created for bad data"


def test_all_problems_are_listed_at_once(tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", [GOOD, {"text": "a"}, GOOD, {"messages": []}])
    with pytest.raises(DataError) as error:
        check_rows(load_rows(str(data)), ChatSFT().check_row)
    assert [p.where for p in error.value.problems] == [f"{data}:2", f"{data}:4"]


def test_assistant_before_user_and_empty_answer(tmp_path):
    row = {"messages": [{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "  "}]}
    problems = ChatSFT().check_row(row)
    assert ("messages[0].role", "an assistant message comes before any user message") in problems
    assert ("messages[2].content", "assistant message is empty") in problems


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_rows(str(tmp_path / "nope.jsonl"))
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        load_rows(str(tmp_path / "data.txt"))


def test_csv_rows_point_at_their_lines(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\nhello,a\n,b\n")
    rows = load_rows(str(tmp_path / "d.csv"))
    assert [r.where for r in rows] == [f"{tmp_path / 'd.csv'}:2", f"{tmp_path / 'd.csv'}:3"]
    assert rows[0].data == {"text": "hello", "label": "a"}


def test_json_array_file(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps([GOOD, GOOD]))
    rows = load_rows(str(tmp_path / "d.json"))
    check_rows(rows, ChatSFT().check_row)
    assert rows[1].where.endswith("d.json record 1")


def test_eval_split_is_reproducible_and_disjoint(tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", [{**GOOD, "id": i} for i in range(50)])
    rows = load_rows(str(data))
    train, held = split_rows(rows, 0.1, seed=1)
    again, held_again = split_rows(rows, 0.1, seed=1)
    assert len(held) == 5 and len(train) == 45
    assert [r.data["id"] for r in held] == [r.data["id"] for r in held_again]
    assert not {r.data["id"] for r in held} & {r.data["id"] for r in train}


def test_empty_file_is_an_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty"):
        check_rows(load_rows(str(tmp_path / "empty.jsonl")), ChatSFT().check_row)


TASK_BAD_ROWS = {
    "instruct: completion missing": ("tasks.InstructSFT()", {"prompt": "Hi"}, "completion: missing (this row has: prompt)"),
    "instruct: prompt not a string": ("tasks.InstructSFT()", {"prompt": ["Hi"], "completion": "x"}, "prompt: must be a string, got list"),
    "instruct: completion not JSON": ("tasks.InstructSFT(metric='json')", {"prompt": "Hi", "completion": "x"},
                                      "completion: metric='json' needs every completion to be a JSON object"),
    "pretraining: empty text": ("tasks.ContinuedPretraining()", {"text": "   "}, "text: is empty"),
    "pretraining: missing column": ("tasks.ContinuedPretraining()", {"body": "x"}, "text: missing (this row has: body)"),
    "classification: label not a string": ("tasks.Classification()", {"text": "play jazz", "label": 3},
                                           "label: must be a string, got int"),
    "classification: empty text": ("tasks.Classification()", {"text": "", "label": "a"}, "text: is empty"),
    "classification: label outside the given set": ("tasks.Classification(labels=['a', 'b'])", {"text": "x", "label": "c"},
                                                    "label: label 'c' is not one of the valid labels: a, b"),
}
GOOD_FOR = {
    "InstructSFT": {"prompt": "Hi", "completion": "{\"a\": 1}"},
    "ContinuedPretraining": {"text": "Some text."},
    "Classification": {"text": "play jazz", "label": "a"},
}


@pytest.mark.parametrize("case", sorted(TASK_BAD_ROWS))
def test_task_rows_are_checked_before_any_model_loads(case, tmp_path, write_recipe):
    task, bad, expected = TASK_BAD_ROWS[case]
    good = next(v for k, v in GOOD_FOR.items() if k in task)
    goods = [good, {**good, "label": "b"}] if "label" in good else [good, good]
    data = write_jsonl(tmp_path / "rows.jsonl", [*goods, bad, *goods])
    result = CliRunner().invoke(main, ["run", str(write_recipe(str(data), task=task))])
    assert result.exit_code == 2, result.output
    assert f"{data}:3: {expected}" in result.output
    assert not (tmp_path / "runs").exists()


def test_eval_label_outside_the_training_labels_names_its_line(tmp_path):
    from fasttune.tasks import Classification

    train = load_rows(str(write_jsonl(tmp_path / "train.jsonl", [{"text": "x", "label": "a"}, {"text": "y", "label": "b"}])))
    held = load_rows(str(write_jsonl(tmp_path / "eval.jsonl", [{"text": "z", "label": "a"}, {"text": "w", "label": "c"}])))
    task = Classification()
    with pytest.raises(DataError) as error:
        task.check_dataset(train, held)
    assert str(error.value) == f"{tmp_path / 'eval.jsonl'}:2: label: label 'c' is not one of the valid labels: a, b"


def check_json(recipe, *overrides: str) -> dict:
    from helpers import invoke

    result = invoke("check", str(recipe), *overrides, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_right_to_left_and_emoji_text_is_accepted_and_tokenized(tmp_path, write_recipe, tokenizer):
    rows = [{"messages": [{"role": "user", "content": "\u200fמה שלומך? 👋"},
                          {"role": "assistant", "content": "مرحبا! 👨‍👩‍👧 أنا بخير"}]},
            {"messages": [{"role": "user", "content": "Hi 🙂"}, {"role": "assistant", "content": "\u200fשלום ✨"}]}]
    data = write_jsonl(tmp_path / "chat.jsonl", rows * 4)
    report = check_json(write_recipe(str(data)), "data.eval=0")
    assert report["splits"]["train"]["rows"] == 8 and report["splits"]["train"]["rows_cut"] == 0
    assert "[[مرحبا! 👨‍👩‍👧 أنا بخير<|im_end|>" in report["examples"]["train"]["text"]  # decoded back whole
    assert report["splits"]["train"]["trained_share"] > 0


def test_csv_cells_are_text_on_the_line_they_start(tmp_path):
    """A BOM, a quoted cell over two lines, numeric labels and NA: each row named by the line it starts
    on, every cell the text it holds, an empty cell a missing value (docs/data.md)."""
    data = tmp_path / "d.csv"
    long = "word " * 40_000  # 200,000 characters: above the csv module's default cell limit
    data.write_bytes(f'\ufefftext,label,note\n"two\nlines",1,NA\nשלום 👋,0,\n{long},1,x\n'.encode())
    rows = list(load_rows(str(data)))
    assert [r.where for r in rows] == [f"{data}:2", f"{data}:4", f"{data}:5"]
    assert [r.data for r in rows] == [{"text": "two\nlines", "label": "1", "note": "NA"},
                                      {"text": "שלום 👋", "label": "0", "note": None},
                                      {"text": long, "label": "1", "note": "x"}]


def test_train_and_eval_files_of_different_formats_and_numeric_csv_labels(tmp_path, write_recipe):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["play jazz", "rain today?", "lights off", "wake me at 7"]
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f"{t},{i % 2}\n" for i, t in enumerate(texts * 3)))
    held = write_jsonl(tmp_path / "eval.jsonl", [{"text": t, "label": str(i % 2)} for i, t in enumerate(texts)])
    report = check_json(write_recipe(str(train), task="tasks.Classification()"), f"data.eval={held}")
    assert report["figures"]["labels"] == ["0", "1"]
    assert report["figures"]["class_counts"] == {"train": {"0": 6, "1": 6}, "eval": {"0": 2, "1": 2}}
    assert report["examples"]["train"]["where"] == f"{train}:2"
    pq.write_table(pa.Table.from_pylist([{"text": t, "label": str(i % 2)} for i, t in enumerate(texts)]),
                   tmp_path / "eval.parquet")
    report = check_json(write_recipe(str(held), task="tasks.Classification()"), f"data.eval={tmp_path / 'eval.parquet'}")
    assert report["splits"]["eval"]["rows"] == 4 and report["examples"]["eval"]["where"] == f"{tmp_path / 'eval.parquet'} row 0"


def test_rows_are_read_a_pass_at_a_time_not_held(tmp_path):
    """20,000 chat rows (2 MB of JSON, ~30 MB held as Python rows): checking them, splitting them and
    reading every split again keeps one row at a time."""
    import tracemalloc

    from fasttune.config import Data

    data = write_jsonl(tmp_path / "chat.jsonl", [{**GOOD, "id": i} for i in range(20_000)])
    tracemalloc.start()
    train, held = load_splits(Data(str(data), eval=0.1), ChatSFT().check_row, seed=1)
    assert (len(train), len(held)) == (18_000, 2_000)
    assert sum(1 for _ in train) == 18_000 and [r.data["id"] for r in held[:3]] == [r.data["id"] for r in held][:3]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 3 * 2**20, f"peak {peak / 2**20:.1f} MiB"
