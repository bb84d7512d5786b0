"""On the real tokenizers of both shipped models: exactly the assistant tokens carry labels, and a model
without a chat template gets its family's turns when its vocabulary holds them (Gemma), else ChatML."""

from __future__ import annotations

import copy

import pytest

from fasttune.chat_template import CHATML, GEMMA, IGNORE, end_of_turn_ids, set_chat_template, tokenize_conversation
from fasttune.config import Model
from fasttune.errors import ConfigError

CONVERSATION = [
    {"role": "system", "content": "You are Captain Byte."},
    {"role": "user", "content": "What colour is the sky?"},
    {"role": "assistant", "content": "Ahoy! The sky be blue, matey. Arr!"},
    {"role": "user", "content": "And grass?"},
    {"role": "assistant", "content": "Ahoy! Grass be green. Arr!"},
]


def trained_text(tok, out) -> str:
    return tok.decode([t for t, label in zip(out.input_ids, out.labels) if label != IGNORE])


def test_only_assistant_turns_are_labelled(tokenizer):
    out = tokenize_conversation(tokenizer, CONVERSATION, max_length=512)
    end = "<|im_end|>\n"
    assert trained_text(tokenizer, out) == f"Ahoy! The sky be blue, matey. Arr!{end}Ahoy! Grass be green. Arr!{end}"
    assert all(label in (IGNORE, token) for token, label in zip(out.input_ids, out.labels))
    untrained = tokenizer.decode([t for t, label in zip(out.input_ids, out.labels) if label == IGNORE])
    assert "What colour is the sky?" in untrained and "Captain Byte" in untrained and "Ahoy" not in untrained
    assert not out.truncated


def test_tokens_match_the_template_rendering(tokenizer):
    out = tokenize_conversation(tokenizer, CONVERSATION, max_length=512)
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert tokenizer.decode(out.input_ids) == rendered


def test_truncation_is_reported(tokenizer):
    out = tokenize_conversation(tokenizer, CONVERSATION, max_length=20)
    assert out.truncated and len(out.input_ids) == 20 and len(out.labels) == 20


def test_chatml_fallback_for_a_model_without_template(tokenizer):
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    choice = set_chat_template(bare)
    assert choice.name == "chatml" and "no family's turn markers" in choice.why  # SmolLM2 has no Gemma tokens
    assert bare.chat_template == CHATML
    out = tokenize_conversation(bare, CONVERSATION[1:3], max_length=512)
    assert trained_text(bare, out) == "Ahoy! The sky be blue, matey. Arr!<|im_end|>\n"
    assert set_chat_template(tokenizer).name == "model"
    assert tokenizer.convert_ids_to_tokens(end_of_turn_ids(tokenizer)) == ["<|im_end|>"]  # it is also EOS


def test_a_gemma_base_model_gets_gemma_turns_and_stops_on_its_end_of_turn(gemma_tokenizer):
    tok = copy.deepcopy(gemma_tokenizer)
    assert tok.chat_template is None  # the base model ships without one
    choice = set_chat_template(tok)
    assert choice.name == "gemma" and "<start_of_turn> and <end_of_turn> are tokens" in choice.why
    out = tokenize_conversation(tok, CONVERSATION, max_length=512)
    text = tok.decode(out.input_ids)
    # Gemma has no system role: the system text heads the first user turn, as Gemma's own template does it
    assert text.startswith("<bos><start_of_turn>user\nYou are Captain Byte.\n\nWhat colour is the sky?<end_of_turn>\n")
    assert "<start_of_turn>model\nAhoy! The sky be blue" in text and "<|im_start|>" not in text
    assert trained_text(tok, out) == "Ahoy! The sky be blue, matey. Arr!<end_of_turn>\nAhoy! Grass be green. Arr!<end_of_turn>\n"
    assert tok.convert_ids_to_tokens(end_of_turn_ids(tok)) == ["<end_of_turn>", "<eos>"]


def test_model_chat_template_overrides_the_choice(gemma_tokenizer, tmp_path):
    tok = copy.deepcopy(gemma_tokenizer)
    assert set_chat_template(tok, "chatml").name == "chatml" and tok.chat_template == CHATML
    jinja = tmp_path / "mine.jinja"
    jinja.write_text(GEMMA)
    assert set_chat_template(tok, str(jinja)).name == str(jinja) and tok.chat_template == GEMMA
    bare = copy.deepcopy(gemma_tokenizer)
    with pytest.raises(ConfigError, match="the model has no chat template"):
        set_chat_template(bare, "model")
    with pytest.raises(ConfigError, match="no such template file"):
        set_chat_template(bare, str(tmp_path / "missing.jinja"))
    with pytest.raises(ConfigError, match="model.chat_template must be one of auto, model, chatml, gemma"):
        Model(chat_template="llama9")
