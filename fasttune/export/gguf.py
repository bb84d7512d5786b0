"""Write a Hugging Face model folder as one GGUF file, for llama.cpp, Ollama and LM Studio.

The conversion is llama.cpp's own (fasttune/export/converter.py), so every architecture llama.cpp
runs can be exported; f16, bf16 and q8_0 come from it directly, the k-quants (q4_k_m, q5_k_m, q6_k)
from llama.cpp's quantizer inside llama-cpp-python, applied to an f16 file. (fasttune wrote GGUF with
its own writer before; on SmolLM2 the converter's tensors and vocabulary are byte-identical to it,
benchmarks/README.md.)

One check follows, because a wrong tokenizer gives a file that loads and talks nonsense rather than an
error: llama.cpp must split a test text into the same token ids as the model's own tokenizer.

The file is written under a temporary name beside `out_path` and renamed when complete, so an error
or Ctrl-C never leaves a half-written GGUF behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from fasttune.errors import ExportError
from fasttune.export import converter
from fasttune.export.formats import QUANTS
from fasttune.gguf_inference import collected_log, runtime, vocabulary

K_QUANTS = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
            "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}  # made by llama.cpp's quantizer from an f16 file

# The text llama.cpp's converter tokenizes to tell pre-tokenizers apart: spaces, tabs, emoji, digits,
# several scripts and apostrophes, where tokenizers differ.
CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ "
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)


def write_gguf(model_dir: Path, out_path: Path, quant: str = "f16", say=None, f16: Path | None = None,
               tokenizer=None) -> Path:
    """Write the HF model in `model_dir` to `out_path` as a GGUF of type `quant` (one of QUANTS). A k-quant
    is quantized from `f16`, an f16 GGUF of the same model, converted there first when it is not there
    yet (its caller removes it); without one, from an f16 conversion removed after. `tokenizer` is
    `model_dir`'s, when the caller has it loaded (Gemma's 262k-token one takes seconds to load)."""
    model_dir, out_path, say = Path(model_dir), Path(out_path), say or (lambda msg: None)
    if quant not in QUANTS:
        raise ExportError(f"unknown GGUF quantization '{quant}'; valid: {', '.join(QUANTS)}")
    if not (model_dir / "config.json").is_file():
        raise ExportError(f"{model_dir} has no config.json; GGUF export needs a Hugging Face model folder")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.{os.getpid()}.partial")
    own_f16 = f16 is None
    f16 = Path(f16) if f16 else out_path.with_name(f".{out_path.name}.{os.getpid()}.f16")
    f16_partial = f16.with_name(f".{f16.name}.{os.getpid()}.partial")
    try:
        if quant in K_QUANTS:
            if not f16.is_file():
                say("converting to f16 with llama.cpp's converter")
                converter.convert(model_dir, f16_partial, "f16", say)
                os.replace(f16_partial, f16)
            say(f"quantizing to {quant} with llama.cpp")
            _llama_quantize(f16, partial, quant, say)
        else:
            say(f"converting to {quant} with llama.cpp's converter")
            converter.convert(model_dir, partial, quant, say)
        check_tokenizer(partial, _tokenizer_of(model_dir) if tokenizer is None else tokenizer)
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)
        f16_partial.unlink(missing_ok=True)
        if own_f16:
            f16.unlink(missing_ok=True)
    say(f"wrote {out_path} ({out_path.stat().st_size / 2**20:.1f} MiB)")
    return out_path


def _tokenizer_of(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def check_tokenizer(gguf_path: Path, tokenizer) -> None:
    """Refuse a GGUF whose vocabulary splits CHECK_TEXT into other token ids than the model's tokenizer."""
    expected = tokenizer(CHECK_TEXT, add_special_tokens=False).input_ids
    with vocabulary(gguf_path) as vocab:
        got = vocab.tokenize(CHECK_TEXT.encode("utf-8"), add_bos=False, special=False)
    if got != expected:
        first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        raise ExportError(f"the GGUF's tokenizer splits text differently from the model's own (first difference at "
                          f"token {first} of {len(expected)}): the file would answer nonsense, so it was not kept")


def _llama_quantize(src: Path, dst: Path, quant: str, say) -> None:
    """llama.cpp's quantizer, its log (a line per tensor) collected and shown on failure."""
    import ctypes

    llama_cpp = runtime()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, K_QUANTS[quant])
    params.nthread = os.cpu_count() or 1
    with collected_log() as lines:
        failed = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if failed:
        raise RuntimeError(f"llama.cpp could not quantize to {quant}:\n" + "\n".join(lines[-20:]))
    for line in lines:
        if "fallback quantization" in line:  # e.g. rows not a multiple of 256 for k-quants
            say("llama.cpp: " + line.split(": ", 1)[-1])
