"""On the real SmolLM2 tokenizer: exactly the assistant tokens carry labels."""

from __future__ import annotations

import copy

from fasttune.chat_template import CHATML, IGNORE, ensure_chat_template, tokenize_conversation

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
    assert ensure_chat_template(bare) == "chatml"
    assert bare.chat_template == CHATML
    out = tokenize_conversation(bare, CONVERSATION[1:3], max_length=512)
    assert trained_text(bare, out) == "Ahoy! The sky be blue, matey. Arr!<|im_end|>\n"
    assert ensure_chat_template(tokenizer) == "model"
