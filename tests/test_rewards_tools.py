"""GRPO reward functions and their guard; function-calling validation, rendering and metrics."""

from __future__ import annotations

import json

import pytest

from fasttune import rewards
from fasttune.chat_template import IGNORE, TOOLS_CHATML, TOOLS_GEMMA, tokenize_conversation
from fasttune.errors import ConfigError, RewardError
from fasttune.tasks import GRPO, FunctionCalling
from fasttune.tasks.function_calling import parse_call
from fasttune.tasks.grpo import checked
from helpers import ROOT


def test_answer_match_reads_the_final_number_after_thinking():
    fn = rewards.answer_match("answer")
    completions = ["<think>7 + 5 = 12</think> 12", "The answer is 13.", [{"role": "assistant", "content": "12"}], "none"]
    assert fn([None] * 4, completions, answer=["12", "12", "12", "12"]) == [1.0, 0.0, 1.0, 0.0]
    assert fn([None], ["Paris "], answer=["paris"]) == [1.0]  # text answers: case and spaces ignored


def test_format_json_and_length_rewards():
    assert rewards.think_format()(None, ["<think>a</think> 4", "4", "<think></think>"]) == [1.0, 0.0, 0.0]
    assert rewards.json_valid()(None, ['{"a": 1}', "{a: 1}"]) == [1.0, 0.0]
    assert rewards.length_penalty(10)(None, ["x" * 5, "x" * 15, "x" * 40]) == [0.0, -0.5, -1.0]


def test_a_reward_that_raises_is_named():
    def broken(prompts, completions, **columns):
        return [1 / 0 for _ in completions]

    with pytest.raises(RewardError, match="reward function 'broken' raised ZeroDivisionError"):
        checked(broken)(["p"], ["c"])


def test_a_reward_of_the_wrong_length_or_type_is_named():
    def short(prompts, completions, **columns):
        return [1.0]

    def text(prompts, completions, **columns):
        return ["good", "bad"]

    with pytest.raises(RewardError, match="'short' returned 1 values for 2 completions"):
        checked(short)(["p", "p"], ["a", "b"])
    with pytest.raises(RewardError, match="'text' returned 'good'"):
        checked(text)(["p", "p"], ["a", "b"])


def test_grpo_config_is_checked():
    with pytest.raises(ConfigError, match="at least one reward function"):
        GRPO()
    with pytest.raises(ConfigError, match="2 weights for 1 rewards"):
        GRPO(rewards=[rewards.json_valid()], reward_weights=[1.0, 2.0])


def test_grpo_losses_are_the_installed_trls_and_are_refused_before_anything_loads():
    from fasttune.recipe import Recipe, apply_overrides, load_recipe
    from fasttune.tasks.trl_choices import listed

    losses = listed("trainer/grpo_config.py", "GRPOConfig", "loss_type")  # read from TRL's source, not imported
    assert {"grpo", "bnpo", "dr_grpo", "dapo"} <= set(losses)
    with pytest.raises(ConfigError, match=r"task.loss_type='gspo': the installed TRL \(1\.\d+\.\d+\) has the GRPO "
                                          r"losses grpo, dr_grpo, dapo, bnpo"):
        GRPO(rewards=[rewards.json_valid()], loss_type="gspo")
    with pytest.raises(ConfigError, match="'luspo' needs task.importance_sampling_level='sequence'"):
        GRPO(rewards=[rewards.json_valid()], loss_type="luspo")
    for bad, message in (({"importance_sampling_level": "row"}, "must be one of token, sequence, got 'row'"),
                         ({"scale_rewards": "std"}, "must be one of group, batch, none, got 'std'"),
                         ({"epsilon_high": 0.0}, "must be positive"), ({"num_iterations": 0}, "at least 1")):
        with pytest.raises(ConfigError, match=message):
            GRPO(rewards=[rewards.json_valid()], **bad)
    # GSPO from the command line: recorded in config.json, rebuilt from it
    recipe = apply_overrides(load_recipe(ROOT / "recipes/grpo_math.py"),
                             ["task.loss_type=grpo", "task.importance_sampling_level=sequence", "task.epsilon_high=0.28"])
    config = recipe.to_dict()["task"]
    assert (config["loss_type"], config["importance_sampling_level"], config["epsilon_high"]) == ("grpo", "sequence", 0.28)
    rebuilt = Recipe.from_dict(recipe.to_dict()).task
    assert (rebuilt.loss_type, rebuilt.importance_sampling_level, rebuilt.epsilon_high) == ("grpo", "sequence", 0.28)


def test_grpo_metric_is_the_mean_of_each_reward():
    task = GRPO(rewards=[rewards.answer_match("answer"), rewards.think_format()], reward_weights=[1.0, 0.5])
    refs = [{"prompt": [], "answer": "4"}, {"prompt": [], "answer": "9"}]
    m = task.metrics(["<think>2+2</think> 4", "8"], refs, None)
    assert m["rewards"] == {"answer_match": 0.5, "think_format": 0.5} and m["reward"] == 0.75


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def row(call_name="get_weather", arguments=None):
    return {"tools": TOOLS, "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": call_name, "arguments": arguments or {"city": "Oslo"}}}]},
        {"role": "tool", "name": call_name, "content": '{"temperature": 3}'},
        {"role": "assistant", "content": "It is 3 degrees in Oslo."}]}


def test_tool_rows_are_validated_against_their_schemas():
    task = FunctionCalling()
    assert task.check_row(row()) == []
    assert task.check_row(row("get_time"))[0] == (
        "messages[1].tool_calls[0].function.name", "calls 'get_time', which this row's tools do not define (defined: get_weather)")
    assert task.check_row(row(arguments={"town": "Oslo"}))[0] == (
        "messages[1].tool_calls[0].function.arguments", "'city' is a required property (schema of 'get_weather')")
    assert task.check_row(row(arguments='{"city": 5}'))[0][0] == "messages[1].tool_calls[0].function.arguments.city"
    orphan = {"tools": TOOLS, "messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "{}"},
                                           {"role": "assistant", "content": "y"}]}
    assert ("messages[1]", "a tool message must follow an assistant message with tool_calls") in task.check_row(orphan)


def test_tool_calls_and_answers_are_trained_and_nothing_else(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    assert str(FunctionCalling().setup_tokenizer(tok)) == "chatml (fasttune's tool-calling chatml turns: the template had no tools)"
    assert tok.chat_template == TOOLS_CHATML
    r = row()
    out = tokenize_conversation(tok, r["messages"], 2048, tools=r["tools"])
    trained = tok.decode([t for t, label in zip(out.input_ids, out.labels) if label != IGNORE])
    assert trained == ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>\n'
                       "It is 3 degrees in Oslo.<|im_end|>\n")
    text = tok.decode(out.input_ids)
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in text
    assert "<tool_response>\n{\"temperature\": 3}\n</tool_response>" in text


def test_a_gemma_model_calls_tools_in_its_own_turns_and_trains_its_one_token_stop(gemma_tokenizer):
    """Gemma's template has no tools: the tool-calling turns are Gemma's (not ChatML's, whose markers
    Gemma's vocabulary spells in pieces), the signatures head the first user turn as a system text does,
    and each trained turn ends on <end_of_turn>, the one token generation stops on."""
    import copy

    from fasttune.chat_template import end_of_turn_ids

    tok = copy.deepcopy(gemma_tokenizer)
    assert FunctionCalling().setup_tokenizer(tok).name == "gemma" and tok.chat_template == TOOLS_GEMMA
    r = row()
    out = tokenize_conversation(tok, [{"role": "system", "content": "Be brief."}, *r["messages"]], 2048, tools=r["tools"])
    trained = tok.decode([t for t, label in zip(out.input_ids, out.labels) if label != IGNORE])
    assert trained == ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><end_of_turn>\n'
                       "It is 3 degrees in Oslo.<end_of_turn>\n")
    assert end_of_turn_ids(tok)[0] == tok.convert_tokens_to_ids("<end_of_turn>") == 106
    assert [label for label in out.labels if label != IGNORE].count(106) == 2
    text = tok.decode(out.input_ids)
    assert text.startswith("<bos><start_of_turn>user\nBe brief.\n\n# Tools\n") and "<|im_start|>" not in text
    assert "<start_of_turn>user\n<tool_response>\n{\"temperature\": 3}\n</tool_response><end_of_turn>" in text


def test_function_calling_metrics():
    task = FunctionCalling()
    ref = json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}})
    preds = ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
             '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Bergen"}}\n</tool_call>',
             '<tool_call>{"name": "get_weather", "arguments": </tool_call>', "Sunny.", "Four."]
    m = task.metrics(preds, [ref, ref, ref, ref, "(no tool call)"], None)
    assert m["valid_call"] == 0.5 and m["tool_name"] == 0.5 and m["arguments_exact"] == 0.25
    assert m["no_call_when_none_needed"] == 1.0 and m["rows"] == {"with_call": 4, "without_call": 1}
    assert parse_call("no call here") is None


def test_demo_tool_data_is_valid():
    from fasttune.data.load import load_rows
    from fasttune.data.validate import check_rows

    for name in ("tools_train.jsonl", "tools_eval.jsonl"):
        check_rows(load_rows(str(ROOT / "recipes" / "data" / name)), FunctionCalling().check_row)
