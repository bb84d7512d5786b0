"""GGUF export on real components: the session's trained SmolLM2 chat run, merged and converted by
llama.cpp's own converter (tests/conftest.py's chat_export), run by llama.cpp (llama-cpp-python) and
compared with transformers; tiny random llama/mistral/gemma3 models for the architecture-specific tensors.
Each GGUF is written once per test run or module."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fasttune import models
from fasttune.export import gguf as export
from fasttune.gguf_inference import greedy_tokens

pytestmark = pytest.mark.e2e  # converts, writes and runs GGUF files of the embedded model

PROMPTS = ["What is the capital of France?", "Write a short poem about the sea."]
MAX_NEW = 24


@pytest.fixture(scope="module")
def smollm2():
    return Path(models.resolve(models.EMBEDDED))


@pytest.fixture(scope="module")
def exports(chat_export):
    """The session's trained chat run as f16, q8_0 and q4_k_m GGUFs: {quant: path}, and "merged": its
    merged folder, the transformers model they were converted from."""
    out, _ = chat_export
    return {"merged": out / "merged", **{quant: out / f"model-{quant}.gguf" for quant in ("f16", "q8_0", "q4_k_m")}}


def chat_prompt(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)


def test_f16_greedy_matches_transformers(exports, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(exports["merged"], dtype=torch.float32).eval()
    answers = []
    for question in PROMPTS:
        text = chat_prompt(tokenizer, question)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=MAX_NEW, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        hf = out[0, ids.shape[1]:].tolist()
        hf = hf[:hf.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in hf else hf
        llama = greedy_tokens(exports["f16"], text, MAX_NEW)
        print(f"{question!r}: {len(llama)} tokens, llama.cpp {tokenizer.decode(llama)!r}")
        assert llama == hf, (tokenizer.decode(llama), tokenizer.decode(hf))
        answers.append(llama)
    assert "Ahoy" in tokenizer.decode(answers[0])  # the trained persona (the base model answers plainly)
    assert sum(map(len, answers)) >= 16


def test_metadata(exports, tokenizer):
    import gguf

    reader = gguf.GGUFReader(exports["f16"])
    fields = {name: field.contents() for name, field in reader.fields.items()}
    assert fields["general.architecture"] == "llama"
    assert fields["tokenizer.ggml.pre"] == "smollm"
    assert fields["tokenizer.chat_template"] == (exports["merged"] / "chat_template.jinja").read_text()
    assert fields["tokenizer.ggml.bos_token_id"] == tokenizer.bos_token_id
    assert fields["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    assert fields["llama.rope.freq_base"] == 100000.0
    assert fields["llama.attention.head_count_kv"] == 3
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert "output.weight" not in types  # tied: llama.cpp reuses token_embd
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.weight"] == "F16"


def test_quantized_exports_run_and_shrink(exports, tokenizer):
    sizes = {quant: exports[quant].stat().st_size for quant in ("f16", "q8_0", "q4_k_m")}
    assert sizes["q4_k_m"] < sizes["q8_0"] < sizes["f16"]
    for quant in ("q8_0", "q4_k_m"):
        tokens = greedy_tokens(exports[quant], chat_prompt(tokenizer, PROMPTS[0]), 16)
        print(f"{quant}: {tokenizer.decode(tokens)!r}")
        assert tokenizer.decode(tokens).strip()


def test_llama_cpps_log_shows_its_errors_and_nothing_else(exports, capfd):
    """llama-cpp-python's own log callback, with verbose=False, printed llama.cpp's warnings (one per
    vocabulary-only load, dozens in an export's verification) and hid its errors; fasttune's prints the
    errors alone, and `collected_log` gathers the whole log (the quantizer's lines) without printing it."""
    from fasttune.gguf_inference import GGML_LOG_LEVEL_ERROR, _log, chat_template, collected_log

    capfd.readouterr()
    chat_template(exports["q8_0"])  # a vocabulary-only load
    with collected_log() as lines:
        chat_template(exports["q8_0"])
    assert capfd.readouterr().err == ""
    assert any("n_ctx_train" in line for line in lines)  # it warned about the context, unprinted
    _log(GGML_LOG_LEVEL_ERROR - 1, b"a warning\n", None)
    _log(GGML_LOG_LEVEL_ERROR, b"an error\n", None)
    assert capfd.readouterr().err == "an error\n"


def test_prompts_longer_than_512_tokens_get_a_context_that_holds_them(exports, tokenizer):
    """Function-calling prompts carry tool schemas (560 tokens in the shipped data); verification and
    chat must answer them, as they did before the tools were added."""
    from fasttune.gguf_inference import greedy_tokens

    tools = "; ".join(f"tool_{i}(city: str, date: str, units: str) returns the weather forecast" for i in range(40))
    text = chat_prompt(tokenizer, f"Tools: {tools}. Which tool gives the forecast for Paris?")
    assert len(tokenizer(text).input_ids) > 600
    assert tokenizer.decode(greedy_tokens(exports["q8_0"], text, 16)).strip()


def tiny_model(kind: str, folder, smollm2):
    """A random 2-layer model of `kind` with its family's tokenizer (SmolLM2's; Gemma's for gemma3),
    saved into `folder`."""
    import transformers as tf

    common = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, initializer_range=0.2)
    config = {
        "llama": lambda: tf.LlamaConfig(**common, attention_bias=True, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
        "mistral": lambda: tf.MistralConfig(**{**common, "tie_word_embeddings": False}),
        # Gemma 3's own shape traits: one KV head, head_dim apart from hidden/heads, a sliding window
        "gemma3": lambda: tf.Gemma3TextConfig(**{**common, "vocab_size": 262144, "num_key_value_heads": 1,
                                                 "head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 8, "bos_token_id": 2,
                                                 "eos_token_id": 1, "pad_token_id": 0}),
    }[kind]()
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # norms and biases away from their 1/0 init, so mistakes in them show
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
            elif param.ndim == 1:
                param.normal_(0, 0.2)
    model.save_pretrained(folder)
    source = Path(models.resolve("gemma3-270m")) if kind == "gemma3" else smollm2
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    if kind == "gemma3":  # the base model has no template: training gives it Gemma's turns, saved with it
        from transformers import AutoTokenizer

        from fasttune.chat_template import set_chat_template

        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert set_chat_template(tokenizer).name == "gemma"
        tokenizer.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def tiny_ggufs(smollm2, tmp_path_factory):
    """kind -> (the random model, its folder, its f16 GGUF), each built and converted once."""
    made = {}

    def get(kind: str):
        if kind not in made:
            out = tmp_path_factory.mktemp(kind)
            model = tiny_model(kind, out / kind, smollm2)
            made[kind] = model, out / kind, export.write_gguf(out / kind, out / f"{kind}.gguf", "f16")
        return made[kind]

    return get


# Qwen folders are left out: transformers gives them Qwen's pre-tokenizer whatever tokenizer.json says,
# and llama.cpp's converter rightly refuses that over SmolLM2's vocabulary (no real model has it).
@pytest.mark.parametrize("kind", ["llama", "mistral", "gemma3"])
def test_architectures_match_transformers_logits(kind, tiny_ggufs):
    """q/k permutation and biases (llama), Llama-3 rope factors, an untied output (mistral), Gemma 3's
    single KV head, q/k norms, sliding window and SentencePiece vocabulary: llama.cpp's logits on the
    f16 file equal transformers'."""
    import llama_cpp

    model, _, path = tiny_ggufs(kind)
    ids = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198, 504, 3575]
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=1, verbose=False, logits_all=True)
    try:
        llm.eval(ids)
        got = np.array(llm.scores[:len(ids)])
    finally:
        llm.close()
    assert (got.argmax(-1) == expected.argmax(-1)).all()
    assert np.abs(got - expected).max() < 0.1, np.abs(got - expected).max()  # f16 weights; logits ~±9


def test_gemma_turns_prompt_the_model_as_training_did_in_every_runtime(tiny_ggufs, tmp_path):
    """Gemma's turns (no system role: the system text opens the first user turn; BOS from the tokenizer
    in Ollama, from the template elsewhere) render to training's token ids through the GGUF's template
    and the Modelfile's Go template, and every runtime stops on <end_of_turn>, not on Gemma's <eos>."""
    from transformers import AutoTokenizer

    from fasttune.export import conformance
    from fasttune.export.modelfile import write_modelfile

    _, folder, path = tiny_ggufs("gemma3")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    modelfile = tmp_path / "model.Modelfile"
    write_modelfile(modelfile, path.name, tokenizer)
    record = conformance.check(path, modelfile, tokenizer)
    assert record["problems"] == [] and record["same_text"] == record["identical"] == record["compared"] == 9, record
    assert record["renderers"]["ollama"] == ["system_prompt", "no_system_prompt", "multi_turn"]
    stop = record["stop"]
    assert stop["end_of_turn"] == {"id": 106, "text": "<end_of_turn>"} and stop["gguf_eos_id"] == 1
    assert stop["llama_cpp_stops_on_it"] and stop["modelfile_stop"] == ["<end_of_turn>"]
    # a twin that gives the system prompt a turn of its own (Gemma has no system role) is caught
    modelfile.write_text(modelfile.read_text().replace("{{ $system = .Content }}",
                                                       "<start_of_turn>system\n{{ .Content }}<end_of_turn>\n"))
    drifted = conformance.check(path, modelfile, tokenizer)["first_difference"]
    assert (drifted["case"], drifted["renderer"]) == ("system_prompt", "ollama")
    assert drifted["training"]["text"] == "user" and drifted["ollama"]["text"] == "system"


def test_teacher_forced_choices_are_the_next_token_argmax_after_each_prefix(tiny_ggufs):
    """Export verification's second count: given the prompt and a fixed answer's first i tokens, the
    GGUF's greedy next token, for every i, with llama.cpp's KV cache kept between positions. It must
    equal transformers' argmax over one forward pass of the whole sequence (an answer that is not the
    model's own, so the choices are not merely the answer echoed)."""
    import llama_cpp

    from fasttune.gguf_inference import forced_choices, sized_for, vocabulary

    model, _, path = tiny_ggufs("llama")
    text = "The capital of France is"
    answer = [4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 520]
    with vocabulary(path) as vocab:
        prompt = vocab.tokenize(text.encode(), add_bos=False, special=True)
        is_end = lambda t: llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(vocab.model), t)  # noqa: E731
        with torch.no_grad():
            logits = model(torch.tensor([prompt + answer])).logits[0]
        expected = [None if is_end(t) else t for t in logits[len(prompt) - 1:-1].argmax(-1).tolist()]
    with sized_for(path, [text], 16) as llm:
        got = forced_choices(llm, text, answer, 3)
    assert got == expected[3:] and got != answer[3:]


def test_an_architecture_llama_cpp_cannot_convert_is_refused_in_its_words(smollm2, tmp_path):
    import json

    folder = tmp_path / "invented"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(smollm2 / name, folder / name)
    config = json.loads((smollm2 / "config.json").read_text())
    config.update(model_type="invented", architectures=["InventedForCausalLM"])
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(export.ExportError, match="llama.cpp's converter could not convert") as error:
        export.write_gguf(folder, tmp_path / "out.gguf")
    assert "InventedForCausalLM" in str(error.value)
    assert list(tmp_path.glob("*.gguf*")) == [] and not list(tmp_path.glob(".*"))


def test_unknown_quant(smollm2, tmp_path):
    with pytest.raises(export.ExportError) as error:
        export.write_gguf(smollm2, tmp_path / "out.gguf", "q3_xx")
    assert "q3_xx" in str(error.value) and all(q in str(error.value) for q in export.QUANTS)
    assert list(tmp_path.iterdir()) == []


def test_a_k_quant_is_quantized_from_the_f16_file_it_is_given(exports, tmp_path):
    """An export that writes f16 and k-quants converts once: each k-quant is quantized from the f16 output."""
    said, f16 = [], exports["f16"]
    before = f16.stat().st_mtime_ns
    export.write_gguf(exports["merged"], tmp_path / "model-q6_k.gguf", "q6_k", say=said.append, f16=f16)
    assert not any("converting" in line for line in said) and any("quantizing to q6_k" in line for line in said)
    assert f16.stat().st_mtime_ns == before and [p.name for p in tmp_path.iterdir()] == ["model-q6_k.gguf"]
    assert tmp_path.joinpath("model-q6_k.gguf").stat().st_size < 0.6 * f16.stat().st_size  # q8_0 where rows do not fit


def test_interrupted_export_leaves_nothing(smollm2, tmp_path):
    """Ctrl-C after the intermediate f16 file is written and before llama.cpp quantizes it."""

    def say(message: str) -> None:
        if message.startswith("quantizing"):
            assert len(list(tmp_path.iterdir())) == 1  # the hidden f16 intermediate, complete
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export.write_gguf(smollm2, tmp_path / "out.gguf", "q4_k_m", say=say)
    assert list(tmp_path.iterdir()) == []
