"""The bad-input corpus (tests/bad_inputs/, written by make_bad_inputs.py): every file ends `fasttune
run` with exit 2, a message naming the file, the line (or row) and the field, and no run folder."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from fasttune.cli import main

CORPUS = Path(__file__).resolve().parent / "bad_inputs"

TASKS = {
    "chat": "tasks.ChatSFT()",
    "instruct": "tasks.InstructSFT()",
    "instructjson": "tasks.InstructSFT(metric='json')",
    "pretrain": "tasks.ContinuedPretraining()",
    "classify": "tasks.Classification()",
    "classifyset": "tasks.Classification(labels=['a', 'b'])",
    "grpo": "tasks.GRPO(rewards=[rewards.answer_match('answer')])",
    "tools": "tasks.FunctionCalling()",
    "dpo": "tasks.DPO()",
    "kto": "tasks.KTO()",
}

# file -> what the error must say after "<file>:"; most bad rows are on line 3
EXPECTED = {
    "chat__broken_json.jsonl": "3: not valid JSON",
    "chat__wrong_column.jsonl": "3: messages: missing (this row has: conversation)",
    "chat__messages_not_a_list.jsonl": "3: messages: must be a non-empty list of messages",
    "chat__unknown_role.jsonl": "3: messages[1].role: unknown role 'pirate'",
    "chat__content_not_a_string.jsonl": "3: messages[0].content: must be a string, got int",
    "chat__empty_answer.jsonl": "3: messages[1].content: assistant message is empty",
    "chat__no_user.jsonl": "3: messages[0].role: an assistant message comes before any user message",
    "chat__row_not_an_object.jsonl": "3: each line must be a JSON object, got list",
    "chat__not_utf8.jsonl": "3: not UTF-8 text (byte 0xe9",
    "chat__empty_file.jsonl": None,  # no line to name: the whole file is empty
    "chat__json_not_a_list.json": None,
    "instruct__completion_missing.jsonl": "3: completion: missing (this row has: prompt)",
    "instruct__prompt_not_a_string.jsonl": "3: prompt: must be a string, got list",
    "instruct__empty_prompt.jsonl": "3: prompt: is empty",
    "instructjson__completion_not_json.jsonl": "3: completion: metric='json' needs every completion to be a JSON object",
    "pretrain__empty_text.jsonl": "3: text: is empty",
    "pretrain__wrong_column.jsonl": "3: text: missing (this row has: body)",
    "pretrain__text_not_a_string.jsonl": "3: text: must be a string, got int",
    "classify__label_not_a_string.jsonl": "3: label: must be a string, got int",
    "classify__empty_text.jsonl": "3: text: is empty",
    "classify__csv_missing_column.csv": "2: label: missing (this row has: lable, text)",
    "classify__csv_header_only.csv": None,
    "classifyset__label_outside_the_set.jsonl": "3: label: label 'c' is not one of the valid labels: a, b",
    "grpo__prompt_missing.jsonl": "3: prompt: missing (this row has: answer, question)",
    "grpo__empty_prompt.jsonl": "3: prompt: is empty",
    "grpo__message_without_content.jsonl": "3: prompt[0]: must be an object with string role and content",
    "grpo__prompt_a_number.jsonl": "3: prompt: must be a string or a list of messages, got int",
    "tools__call_to_undefined_tool.jsonl": "3: messages[1].tool_calls[0].function.name: calls 'get_time', which this "
                                           "row's tools do not define (defined: get_weather)",
    "tools__arguments_break_the_schema.jsonl": "3: messages[1].tool_calls[0].function.arguments.city: 5 is not of type "
                                               "'string'",
    "tools__arguments_not_json.jsonl": "3: messages[1].tool_calls[0].function.arguments: is a string that is not valid "
                                       "JSON",
    "tools__tool_result_without_a_call.jsonl": "3: messages[1]: a tool message must follow an assistant message with "
                                               "tool_calls",
    "tools__tools_missing.jsonl": "3: tools: missing or not a non-empty list of function definitions",
    "tools__unknown_role.jsonl": "3: messages[0].role: unknown role 'robot'",
    "dpo__same_replies.jsonl": "3: rejected: is the same as chosen",
    "dpo__rejected_missing.jsonl": "3: rejected: missing (this row has: chosen, prompt)",
    "kto__label_not_a_boolean.jsonl": "3: label: must be true or false (desirable or not), got 'yes'",
    "kto__completion_missing.jsonl": "3: completion: missing (this row has: label, prompt)",
    "kto__all_desirable.jsonl": None,
    "chat__reasoning_on_a_user_turn.jsonl": "3: messages[0].reasoning_content: reasoning belongs on assistant "
                                            "messages only, not on a 'user' one",
    "chat__reasoning_not_a_string.jsonl": "3: messages[1].thinking: must be a string, got list",
    "instruct__reasoning_not_a_string.jsonl": "3: reasoning_content: must be a string, got int",
    "instruct__reasoning_twice.jsonl": "3: thinking: give the reasoning in reasoning_content or in thinking, not both",
    "chat__lone_surrogate.jsonl": "3: messages[0].content: holds a lone surrogate (\\ud800), half of a character",
    "chat__nul_character.jsonl": "3: messages[0].content: holds a NUL character (\\u0000): binary data, not text",
    "chat__nul_bytes.jsonl": "3: holds NUL bytes: binary data or UTF-16 text, not UTF-8",
    "chat__utf16_file.jsonl": "1: holds NUL bytes: binary data or UTF-16 text, not UTF-8",
    "chat__zero_width_answer.jsonl": "3: messages[1].content: assistant message is empty",
    "pretrain__zero_width_text.jsonl": "3: text: is empty",
    "chat__nested_too_deeply.jsonl": "3: messages: nested more than 100 levels deep",
    "classify__csv_empty_cell.csv": "3: text: is empty",
    "classify__csv_empty_cell_after_a_multiline_cell.csv": "5: text: is empty",
    "classify__csv_cell_count.csv": "3: has 3 cells, the header has 2",
    "classify__csv_header_twice.csv": "1: the header names 'text' twice",
    "classify__csv_not_utf8.csv": "3: not UTF-8 text (byte 0xe9 at column 4)",
    "classify__parquet_null_text.parquet": " row 2: text: is empty",  # Parquet rows are counted from 0
    "classify__parquet_labels_are_numbers.parquet": " row 0: label: must be a string, got int",
    "classify__parquet_cut_short.parquet": None,
}
WHOLE_FILE = {"chat__empty_file.jsonl": "no rows: the data set is empty",
              "chat__json_not_a_list.json": "a .json data file must hold a list of objects",
              "classify__csv_header_only.csv": "no rows: the data set is empty",
              "classify__parquet_cut_short.parquet": "not a readable Parquet file: ArrowInvalid",
              "kto__all_desirable.jsonl": "label: every training row is desirable: KTO needs some rows of each kind"}
DATA_FILES = (".jsonl", ".json", ".csv", ".parquet")


def run_on(data: Path, tmp_path: Path):
    task = TASKS[data.name.split("__")[0]]
    recipe = tmp_path / "recipe.py"
    recipe.write_text(f"from fasttune import Data, Log, Recipe, Train, rewards, tasks\n\n"
                      f"recipe = Recipe(task={task}, data=Data({str(data)!r}, eval=0.25), train=Train(max_steps=2),\n"
                      f"                log=Log(runs_dir={str(tmp_path / 'runs')!r}, report_to=[]))\n")
    return CliRunner().invoke(main, ["run", str(recipe)])


def test_the_corpus_is_complete_and_in_step_with_its_generator(tmp_path):
    files = sorted(p.name for p in CORPUS.iterdir() if p.suffix in DATA_FILES)
    assert files == sorted(EXPECTED) and len(files) >= 30
    assert {name.split("__")[0] for name in files} >= {"chat", "instruct", "pretrain", "classify", "grpo", "tools", "dpo",
                                                            "kto"}
    subprocess.run([sys.executable, str(CORPUS / "make_bad_inputs.py"), str(tmp_path)], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    for name in files:  # Parquet files record the pyarrow version that wrote them: their rows are compared
        if name.endswith(".parquet") and "cut_short" not in name:
            import pyarrow.parquet as pq

            assert pq.read_table(tmp_path / name).equals(pq.read_table(CORPUS / name)), name
        elif not name.endswith(".parquet"):
            assert (tmp_path / name).read_bytes() == (CORPUS / name).read_bytes(), f"{name}: rerun make_bad_inputs.py"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_exits_2_naming_file_line_and_field(name, tmp_path):
    data = CORPUS / name
    result = run_on(data, tmp_path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    if EXPECTED[name] is None:
        assert f"{data}: {WHOLE_FILE[name]}" in result.output, result.output
    else:
        separator = "" if EXPECTED[name].startswith(" ") else ":"  # "file:line" or "file row N"
        assert f"{data}{separator}{EXPECTED[name]}" in result.output, result.output
    assert not (tmp_path / "runs").exists(), "a run folder was created for bad data"


def test_a_huge_row_is_refused_with_its_line(tmp_path):
    data = tmp_path / "chat__huge.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Ahoy!"}]})
    huge = json.dumps({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Arr " * 300_000}]})
    data.write_text("\n".join([good, huge, good, good]) + "\n")
    result = run_on(data, tmp_path)
    assert result.exit_code == 2 and f"{data}:2: the line is 1,200,0" in result.output, result.output
    assert "bytes long (the limit is 1,000,000)" in result.output
    assert not (tmp_path / "runs").exists()


def test_a_file_that_is_one_endless_line_is_refused_without_reading_it_into_memory(tmp_path):
    """A 10 GB file without a newline once exhausted memory: it was read as one line before its length
    was looked at. Here 40 MB: the reader holds at most the limit (1 MB) of it at a time."""
    from fasttune.data.load import load_rows
    from fasttune.errors import DataError

    data, start = tmp_path / "chat.jsonl", '{"messages": [{"role": "user", "content": "'
    with data.open("w") as f:
        f.write(start)
        for _ in range(40):
            f.write("a" * 2**20)
    tracemalloc.start()
    with pytest.raises(DataError) as error:
        load_rows(str(data))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(error.value) == f"{data}:1: the line is {len(start) + 40 * 2**20:,} bytes long (the limit is 1,000,000): rows " \
                               "run together, or a field holds a file"
    assert peak < 5 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_a_line_nested_past_the_json_parser_is_named(tmp_path):
    """Deeper than the parser recurses (RecursionError, once a traceback): too big for the corpus."""
    data = tmp_path / "chat__deep.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Ahoy!"}]})
    data.write_text("\n".join([good, '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}", good, good]) + "\n")
    result = run_on(data, tmp_path)
    assert result.exit_code == 2 and f"{data}:2: nested more than 100 levels deep" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()
