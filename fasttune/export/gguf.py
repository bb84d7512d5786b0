"""Write a Hugging Face model folder as one GGUF file, for llama.cpp, Ollama and LM Studio.

Why our own writer: Unsloth's `save_pretrained_gguf` downloads and compiles llama.cpp at export
time, which fails offline and is its users' most common complaint. The pieces needed are already
installed: `gguf` (llama.cpp's own Python package) writes the file and its f16/bf16/q8_0 tensors,
and `llama-cpp-python` carries llama.cpp's quantizer for the k-quants (q4_k_m, q5_k_m, q6_k).

What a correct file needs, learnt from llama.cpp's `convert_hf_to_gguf.py` (each one, done wrong,
gives a file that loads and talks nonsense rather than an error):
- llama-arch q_proj/k_proj rows permuted into llama.cpp's rotary layout (k with the KV heads);
- `tokenizer.ggml.pre`, found by hashing the token ids of a fixed check text. An unknown hash is an
  error here, never a guess: a wrong name silently changes how llama.cpp splits text;
- norms and other 1-D tensors in F32; tied embeddings mean no `output.weight`;
- rope_theta under `rope_parameters` (transformers 5) or at the top level (older configs).
Byte-level BPE tokenizers only (SmolLM, Qwen, Llama 3, Mistral Nemo): SentencePiece ones (Llama 2,
Mistral 7B v0.x) are refused, as are rope types other than default and llama3.

The file is written under a temporary name beside `out_path` and renamed when complete, so an error
or Ctrl-C never leaves a half-written GGUF behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fasttune.errors import ExportError
from fasttune.export.formats import QUANTS

SUPPORTED = ("llama", "qwen2", "qwen3", "mistral")
K_QUANTS = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
            "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}  # made by llama.cpp's quantizer from an f16 file

# The text llama.cpp tokenizes to tell pre-tokenizers apart, and the sha256 of str(token ids) -> the
# `tokenizer.ggml.pre` value llama.cpp's converter writes for it (its get_vocab_base_pre).
CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ "
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
PRE_TOKENIZERS = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM, SmolLM2
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5, Qwen2, Qwen2.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral Nemo
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}


def write_gguf(model_dir: Path, out_path: Path, quant: str = "f16", say=None) -> Path:
    """Write the HF model in `model_dir` to `out_path` as a GGUF of type `quant` (one of QUANTS)."""
    model_dir, out_path, say = Path(model_dir), Path(out_path), say or (lambda msg: None)
    if quant not in QUANTS:
        raise ExportError(f"unknown GGUF quantization '{quant}'; valid: {', '.join(QUANTS)}")
    config = read_config(model_dir)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.{os.getpid()}.partial")
    f16 = out_path.with_name(f".{out_path.name}.{os.getpid()}.f16.partial")
    try:
        if quant in K_QUANTS:
            _write(model_dir, config, f16, "f16", say)
            say(f"quantizing to {quant} with llama.cpp")
            _llama_quantize(f16, partial, quant, say)
        else:
            _write(model_dir, config, partial, quant, say)
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)
        f16.unlink(missing_ok=True)
    say(f"wrote {out_path} ({out_path.stat().st_size / 2**20:.1f} MiB)")
    return out_path


def read_config(model_dir: Path) -> dict:
    """config.json of `model_dir`, refused unless its model_type is SUPPORTED."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ExportError(f"{model_dir} has no config.json; GGUF export needs a Hugging Face model folder")
    config = json.loads(path.read_text())
    if config.get("model_type") not in SUPPORTED:
        raise ExportError(f"GGUF export does not support architecture '{config.get('model_type')}'; "
                          f"supported: {', '.join(SUPPORTED)}")
    return config


def _write(model_dir: Path, config: dict, path: Path, quant: str, say) -> None:
    import gguf

    kind = config["model_type"]
    arch = {"qwen2": gguf.MODEL_ARCH.QWEN2, "qwen3": gguf.MODEL_ARCH.QWEN3}.get(kind, gguf.MODEL_ARCH.LLAMA)
    writer = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[arch], use_temp_file=True)
    ftype = {"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant]
    say("writing tokenizer and hyper-parameters")
    _add_vocab(writer, model_dir, config)  # first: an unknown tokenizer fails before any weight is read
    _add_hparams(writer, config, ftype, name=model_dir.name)
    say(f"converting weights to {quant}")
    try:
        _add_tensors(writer, model_dir, config, arch, quant)  # into the writer's spooled temp file
        writer.write_header_to_file(path=path)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
        if writer.temp_file is not None:
            writer.temp_file.close()


def _add_hparams(writer, config: dict, ftype, name: str) -> None:
    import gguf

    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(_rope(config).get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _rope(config: dict) -> dict:
    """The rope settings (transformers 5: `rope_parameters`; before: `rope_scaling`), checked."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "llama3"):
        raise ExportError(f"GGUF export does not support rope_type '{kind}' yet (only default and llama3)")
    return rope


def _llama3_rope_factors(config: dict, rope: dict):
    """Llama 3.1+ scales rotary frequencies by wavelength; llama.cpp reads the factors as a tensor."""
    import numpy as np

    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    freqs = 1.0 / rope.get("rope_theta", config.get("rope_theta", 10000.0)) ** (np.arange(0, dim, 2) / dim)
    factor, old_ctx = rope.get("factor", 8.0), rope.get("original_max_position_embeddings", 8192)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    wavelen = 2 * np.pi / freqs
    smooth = (old_ctx / wavelen - low) / (high - low)
    divisor = np.where(wavelen > old_ctx / low, factor, 1 / ((1 - smooth) / factor + smooth))
    return np.where(wavelen < old_ctx / high, 1.0, divisor).astype(np.float32)


def _permute(w, heads: int):
    """Reorder q/k rows from HF's rotate-half layout to llama.cpp's interleaved one."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _add_tensors(writer, model_dir: Path, config: dict, arch, quant: str) -> None:
    import gguf
    import torch
    from safetensors import safe_open

    files = sorted(model_dir.glob("model*.safetensors"))
    if not files:
        raise ExportError(f"{model_dir} has no model*.safetensors weights (save it with safe_serialization)")
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    if (rope := _rope(config)).get("rope_type") == "llama3":
        name = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"
        writer.add_tensor(name, _llama3_rope_factors(config, rope))
    for file in files:
        with safe_open(file, framework="pt") as f:  # torch API: numpy cannot read bf16
            for hf_name in f.keys():
                if hf_name.endswith("rotary_emb.inv_freq") or (
                        hf_name == "lm_head.weight" and config.get("tie_word_embeddings")):
                    continue  # recomputed by llama.cpp / the same tensor as token_embd
                name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise ExportError(f"no GGUF name for tensor '{hf_name}' of a {config['model_type']} model")
                data = f.get_tensor(hf_name).to(torch.float32).numpy()
                if arch == gguf.MODEL_ARCH.LLAMA and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                    data = _permute(data, heads)
                elif arch == gguf.MODEL_ARCH.LLAMA and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                    data = _permute(data, kv_heads)
                data, qtype = _encode(data, name, quant)
                writer.add_tensor(name, data, raw_dtype=qtype)


def _encode(data, name: str, quant: str):
    """(array, ggml type) for one tensor: 1-D tensors and norms F32, matrices in `quant`."""
    import gguf
    from gguf.quants import quantize

    Q = gguf.GGMLQuantizationType
    if data.ndim < 2 or name.endswith("_norm.weight"):
        return data, Q.F32
    qtype = {"f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0}[quant]
    if qtype == Q.Q8_0 and data.shape[-1] % gguf.GGML_QUANT_SIZES[Q.Q8_0][0]:
        qtype = Q.F16  # rows must be whole Q8_0 blocks (llama.cpp's converter does the same)
    return quantize(data, qtype), qtype


def pre_tokenizer_hash(tokenizer) -> str:
    """What llama.cpp's converter keys PRE_TOKENIZERS by: sha256 of the check text's token ids."""
    import hashlib

    return hashlib.sha256(str(tokenizer.encode(CHECK_TEXT)).encode()).hexdigest()


def _add_vocab(writer, model_dir: Path, config: dict) -> None:
    import gguf
    from transformers import AutoTokenizer

    tokenizer_json = model_dir / "tokenizer.json"
    model = json.loads(tokenizer_json.read_text()).get("model", {}) if tokenizer_json.is_file() else {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise ExportError("GGUF export supports byte-level BPE tokenizers (tokenizer.json of type BPE) only; "
                          f"{model_dir} has {model.get('type', 'no tokenizer.json')}"
                          + (" with byte fallback (SentencePiece style)" if model.get("byte_fallback") else ""))
    tok = AutoTokenizer.from_pretrained(model_dir)
    digest = pre_tokenizer_hash(tok)
    if digest not in PRE_TOKENIZERS:
        raise ExportError(f"unknown pre-tokenizer (check hash {digest}): no GGUF written, since a guessed "
                          "tokenizer.ggml.pre would make llama.cpp split text differently from transformers. "
                          f"Known: {', '.join(sorted(set(PRE_TOKENIZERS.values())))}")
    vocab_size = config["vocab_size"]
    by_id = {i: t for t, i in tok.get_vocab().items()}
    if max(by_id) >= vocab_size:
        raise ExportError(f"tokenizer has token id {max(by_id)}, beyond the model's vocab_size {vocab_size}")
    added = tok.get_added_vocab()
    tokens, types = [], []
    for i in range(vocab_size):
        token, kind = by_id.get(i), gguf.TokenType.NORMAL
        if token is None:  # ids the embedding has but the tokenizer never produces
            token, kind = f"[PAD{i}]", gguf.TokenType.UNUSED
        elif token in added:
            control = tok.added_tokens_decoder[i].special or (token.startswith("<|") and token.endswith("|>"))
            kind = gguf.TokenType.CONTROL if control else gguf.TokenType.USER_DEFINED
        tokens.append(token)
        types.append(kind)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZERS[digest])
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=vocab_size)
    plain, marked = tok("a", add_special_tokens=False).input_ids, tok("a").input_ids  # does HF add BOS?
    special.add_special_token["bos"] = len(marked) > len(plain) and marked[0] == tok.bos_token_id
    special.add_to_gguf(writer, quiet=True)


def _llama_quantize(src: Path, dst: Path, quant: str, say) -> None:
    """llama.cpp's quantizer, its console output (a line per tensor) captured and shown on failure."""
    import ctypes
    import sys
    import tempfile

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, K_QUANTS[quant])
    params.nthread = os.cpu_count() or 1
    with tempfile.TemporaryFile() as log:
        sys.stdout.flush(), sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            failed = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
        log.seek(0)
        lines = log.read().decode("utf-8", "replace").splitlines()
    if failed:
        raise RuntimeError(f"llama.cpp could not quantize to {quant}:\n" + "\n".join(lines[-20:]))
    for line in lines:
        if "fallback quantization" in line:  # e.g. rows not a multiple of 256 for k-quants
            say("llama.cpp: " + line.split(": ", 1)[-1])
