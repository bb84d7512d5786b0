"""Thinking mode on the real SmolLM2 tokenizer: which template renders reasoning, which tokens carry
the loss with train_on_reasoning on and off, the prompts thinking on and off produce, how answers
split, and the Ollama Modelfile that keeps it after export."""

from __future__ import annotations

import copy

import pytest

from fasttune import tasks, thinking
from fasttune.chat_template import CHATML, THINK_CHATML, render, render_prompt
from fasttune.data.load import Row
from fasttune.errors import ConfigError
from fasttune.export.modelfile import THINK_CHATML_TEMPLATE, write_modelfile

QUESTION = {"role": "user", "content": "How many hours are in 7 days?"}
REASONING = "1 day is 24 hours. 7 × 24 = 140 + 28 = 168."
ANSWER = "168 hours"

# A template that renders reasoning itself, written the way Qwen3's does it (the model's own, so kept)
OWN_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}"
    "{% if m.get('reasoning_content') is string %}{{ '<think>\\n' + m['reasoning_content'] + '\\n</think>\\n\\n' }}"
    "{% endif %}{{ m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and not enable_thinking %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}"
)


@pytest.fixture
def tok(tokenizer):
    return copy.deepcopy(tokenizer)  # templates get swapped: keep the session's tokenizer as it was


def conversation(key: str = "reasoning_content") -> dict:
    return {"messages": [QUESTION, {"role": "assistant", "content": ANSWER, key: REASONING}]}


def ready(task, tok, rows: list[dict]):
    """What `fasttune run` does before tokenizing: check the rows, then set up the template."""
    assert all(task.check_row(r) == [] for r in rows)
    task.check_dataset([Row(f"data.jsonl:{i}", r) for i, r in enumerate(rows, 1)], [])
    return task.setup_tokenizer(tok)


def trained_text(task, tok, row: dict) -> str:
    out = task.tokenize(row, tok, 512)
    return tok.decode([i for i, label in zip(out["input_ids"], out["labels"]) if label != -100])


def test_data_with_reasoning_switches_smollm2_to_the_thinking_template(tok):
    original = tok.chat_template
    assert not thinking.takes_reasoning(original)  # SmolLM2's ChatML knows no reasoning
    assert "fasttune's thinking ChatML" in str(ready(tasks.ChatSFT(), tok, [conversation()]))
    assert tok.chat_template == THINK_CHATML
    assert render(tok, conversation()["messages"]) == (
        "<|im_start|>user\nHow many hours are in 7 days?<|im_end|>\n<|im_start|>assistant\n"
        f"<think>\n{REASONING}\n</think>\n\n{ANSWER}<|im_end|>\n")
    # the same rows without reasoning keep the model's own template, untouched
    plain = copy.deepcopy(tok)
    plain.chat_template = original
    assert str(ready(tasks.ChatSFT(), plain, [{"messages": [QUESTION, {"role": "assistant", "content": ANSWER}]}])) \
        == "model (the model's own)"
    assert plain.chat_template == original


def test_a_template_that_renders_reasoning_itself_is_kept(tok):
    tok.chat_template = OWN_TEMPLATE
    assert str(ready(tasks.ChatSFT(), tok, [conversation()])) == "model (the model's own, with reasoning)"
    assert tok.chat_template == OWN_TEMPLATE


@pytest.mark.parametrize("template", [THINK_CHATML, OWN_TEMPLATE])
def test_reasoning_tokens_are_trained_or_masked_as_configured(tok, template):
    tok.chat_template = template
    both = trained_text(tasks.ChatSFT(), tok, conversation())
    assert both == f"<think>\n{REASONING}\n</think>\n\n{ANSWER}<|im_end|>\n"
    answer_only = trained_text(tasks.ChatSFT(train_on_reasoning=False), tok, conversation())
    assert answer_only == f"{ANSWER}<|im_end|>\n"
    # the prompt is never trained, and every token is in the sequence either way
    full = tasks.ChatSFT(train_on_reasoning=False).tokenize(conversation(), tok, 512)
    assert tok.decode(full["input_ids"]).count(REASONING) == 1


def test_thinking_is_an_alias_of_reasoning_content(tok):
    tok.chat_template = THINK_CHATML
    task = tasks.ChatSFT()
    assert task.tokenize(conversation("thinking"), tok, 512) == task.tokenize(conversation(), tok, 512)
    instruct = tasks.InstructSFT()
    row = {"prompt": QUESTION["content"], "completion": ANSWER, "thinking": REASONING}
    assert str(ready(instruct, tok, [row])) == "model (the model's own, with reasoning)"  # THINK_CHATML, in place
    assert trained_text(instruct, tok, row) == f"<think>\n{REASONING}\n</think>\n\n{ANSWER}<|im_end|>\n"
    masked = tasks.InstructSFT(train_on_reasoning=False)
    assert trained_text(masked, tok, row) == f"{ANSWER}<|im_end|>\n"


def test_empty_reasoning_trains_the_empty_think_block_thinking_off_prefills(tok):
    tok.chat_template = THINK_CHATML
    row = {"prompt": QUESTION["content"], "completion": ANSWER, "reasoning_content": ""}
    assert trained_text(tasks.InstructSFT(), tok, row) == f"<think>\n\n</think>\n\n{ANSWER}<|im_end|>\n"
    off = render_prompt(tok, [QUESTION], enable_thinking=False)
    assert render(tok, tasks.InstructSFT.messages(row)).startswith(off)  # off = the trained no-think turn
    assert trained_text(tasks.InstructSFT(train_on_reasoning=False), tok, row) == f"{ANSWER}<|im_end|>\n"


@pytest.mark.parametrize("template", [THINK_CHATML, OWN_TEMPLATE])
def test_thinking_on_and_off_prompts(tok, template):
    tok.chat_template = template
    head = "<|im_start|>user\nHow many hours are in 7 days?<|im_end|>\n<|im_start|>assistant\n"
    assert render_prompt(tok, [QUESTION]) == head  # unset: the template's default, thinking on
    assert render_prompt(tok, [QUESTION], enable_thinking=True) == head
    assert render_prompt(tok, [QUESTION], enable_thinking=False) == head + "<think>\n\n</think>\n\n"
    thinking.require_switch(tok.chat_template, False, "x")  # has the switch: no error


def test_a_template_without_the_switch_refuses_it(tok):
    tok.chat_template = CHATML
    thinking.require_switch(tok.chat_template, None, "run")  # unset: nothing asked, nothing refused
    with pytest.raises(ConfigError, match="no thinking switch"):
        thinking.require_switch(tok.chat_template, True, "runs/chat_sft-1")
    with pytest.raises(ConfigError, match="'on' or 'off'"):
        thinking.switch("maybe")


@pytest.mark.parametrize("text, expected", [
    ("<think>\n7 × 24 = 168.\n</think>\n\n168 hours", ("7 × 24 = 168.", "168 hours")),
    ("168 hours", (None, "168 hours")),
    ("<think>\n\n</think>\n\n168 hours", ("", "168 hours")),
    ("<think>\n7 × 24 = 1", ("7 × 24 = 1", "")),  # cut off while thinking: no answer
    ("7 × 24 = 168.\n</think>\n\n168 hours", ("7 × 24 = 168.", "168 hours")),  # the block opened in the prompt
])
def test_the_answer_is_what_follows_the_think_block(text, expected):
    assert thinking.split_answer(text) == expected


def test_exact_match_scores_the_answer_and_samples_show_both_parts():
    task = tasks.InstructSFT(metric="exact")
    answers = [f"<think>\n{REASONING}\n</think>\n\n{ANSWER}", ANSWER, f"<think>\n{REASONING}", "170 hours"]
    assert task.metrics(answers, [ANSWER] * 4, None) == {"exact_match": 0.5}
    assert task.sample_answer(answers[0]) == f"_thinking:_ {REASONING} — _answer:_ {ANSWER}"
    assert task.sample_answer(answers[2]) == f"_thinking:_ {REASONING} — _answer:_ (none)"
    assert task.sample_answer(ANSWER) == ANSWER


def test_the_modelfile_renders_thinking_as_training_did(tok, tmp_path):
    tok.chat_template = THINK_CHATML
    write_modelfile(tmp_path / "m.Modelfile", "m.gguf", tok)
    text = (tmp_path / "m.Modelfile").read_text()
    assert f'TEMPLATE """{THINK_CHATML_TEMPLATE}"""' in text and 'PARAMETER stop "<|im_end|>"' in text
    # the Go template writes the same blocks as the Jinja one: reasoning, and the empty block for "off"
    assert "<think>\n{{ .Thinking }}\n</think>\n\n{{ end }}{{ .Content }}" in THINK_CHATML_TEMPLATE
    assert THINK_CHATML_TEMPLATE.endswith(
        "<|im_start|>assistant\n{{ if and $.IsThinkSet (not $.Think) }}<think>\n\n</think>\n\n{{ end }}")
    tok.chat_template = CHATML
    write_modelfile(tmp_path / "plain.Modelfile", "m.gguf", tok)
    assert ".Thinking" not in (tmp_path / "plain.Modelfile").read_text()


def test_interactive_chat_keeps_a_replys_thinking_as_its_reasoning(tok):
    from fasttune.chat import as_message

    tok.chat_template = THINK_CHATML
    reply = as_message(f"<think>\n{REASONING}\n</think>\n\n{ANSWER}")
    assert reply == {"role": "assistant", "content": ANSWER, "reasoning_content": REASONING}
    # the next turn's prompt shows that reply exactly as training rendered it
    assert render(tok, [QUESTION, reply]) == render(tok, conversation()["messages"])
    assert as_message(ANSWER) == {"role": "assistant", "content": ANSWER}
