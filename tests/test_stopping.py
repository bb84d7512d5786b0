"""Held-out answers end on the end-of-turn token, on each shipped model, merged and GGUF alike: the token
is trained, the merged model's generation_config stops on it, and llama.cpp stops on it in the GGUF.

Each model trains the chat recipe 32 steps and exports merged weights and an f16 GGUF, whose verification
answers STOP_PROMPTS held-out prompts greedily, up to STOP_TOKENS tokens, on both (helpers.STOPPING).
SmolLM2 keeps its own ChatML. Gemma 3 is a base model without a template: it gets Gemma's turns and must
learn to end them (benchmarks/README.md has the 60-step figures). Both runs train in the process that
trains tests/test_gemma.py's (tests/conftest.py's `shipped_runs`)."""

from __future__ import annotations

import json

import pytest

from helpers import STOP_PROMPTS, STOP_TOKENS

pytestmark = pytest.mark.e2e  # trains and exports both shipped models: minutes on CPU

MODELS = {  # model -> (end-of-turn token, the template config.json records)
    "smollm2-135m-instruct": ("<|im_end|>", "model"),
    "gemma3-270m": ("<end_of_turn>", "gemma"),
}


@pytest.fixture(scope="module")
def exported(shipped_runs) -> dict:
    """model -> (run folder, config.json, eval.json, the f16 GGUF's entry in export.json)."""
    found = {}
    for model in MODELS:
        folder, summary, config = shipped_runs[f"stopping/{model}"]
        [gguf] = [e for e in json.loads((folder / "export" / "export.json").read_text())["exports"]
                  if e["format"] == "gguf"]
        found[model] = (folder, config, summary, gguf)
    return found


@pytest.mark.parametrize("model", list(MODELS))
def test_held_out_answers_stop_on_the_end_of_turn_merged_and_gguf(exported, model):
    folder, config, summary, gguf = exported[model]
    token, template = MODELS[model]
    assert config["model"]["name"] == model and config["model"]["chat_template"] == template
    assert summary["after"]["eval_loss"] < summary["before"]["eval_loss"]
    stop = gguf["template_conformance"]["stop"]
    assert stop["end_of_turn"]["text"] == token and stop["llama_cpp_stops_on_it"] and stop["modelfile_stops_on_it"]
    generation = json.loads((folder / "export" / "merged" / "generation_config.json").read_text())
    assert stop["end_of_turn"]["id"] in (generation["eos_token_id"] if isinstance(generation["eos_token_id"], list)
                                         else [generation["eos_token_id"]])
    answers = gguf["verification"]["prompts"]
    assert len(answers) == STOP_PROMPTS
    # an answer shorter than the limit ended on the end-of-turn token (verify.py stops both runtimes on it)
    assert all(a["hf_stopped"] and a["gguf_stopped"] for a in answers), answers
    assert all(0 < a["hf_tokens"] < STOP_TOKENS and a["gguf_tokens"] == a["hf_tokens"] for a in answers if a["exact"])
    verification = gguf["verification"]
    assert verification["matched_tokens"] >= 0.95 * verification["total_tokens"]


def test_gemma_is_prompted_in_its_own_turns(exported):
    """A base model without a template gets Gemma's turns, never ChatML's (whose markers it cannot spell
    in one token)."""
    folder, _, _, _ = exported["gemma3-270m"]
    rendered = [p["text"] for p in json.loads((folder / "eval_prompts.json").read_text())]
    assert rendered and all(t.startswith("<bos><start_of_turn>user\n") and t.endswith("<start_of_turn>model\n")
                            for t in rendered)
