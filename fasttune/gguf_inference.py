"""llama.cpp inference on a GGUF file (through llama-cpp-python): what `fasttune chat` and export
verification run. Prompts arrive rendered; special tokens in them are parsed, and no BOS is added
(a chat template writes its own).

llama-cpp-python is fasttune's `gguf` extra, not a plain dependency: PyPI has no wheel of it, and
compiling llama.cpp is most of an install that includes it (benchmarks/README.md, Tests and install),
for a part only GGUF export and GGUF chat use. `runtime()` installs it the first time one of them
needs it, saying so; `bash scripts/install.sh --gguf` installs it ahead of time.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from fasttune.errors import ConfigError, FasttuneError

EXTRA = "gguf"  # fasttune's extra that holds llama-cpp-python (pyproject.toml)


def runtime(say=None):
    """The `llama_cpp` module, installed first (pip, fasttune's `gguf` extra's range) when it is missing,
    with llama.cpp's log going through `_log`."""
    try:
        import llama_cpp
    except ImportError:
        install(say)
        import llama_cpp
    global _log_callback
    if _log_callback is None:
        import ctypes

        _log_callback = llama_cpp.llama_log_callback(_log)  # kept referenced: llama.cpp calls it from C
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
    return llama_cpp


GGML_LOG_LEVEL_ERROR = 4  # ggml.h's enum ggml_log_level: NONE, DEBUG, INFO, WARN, ERROR, CONT
_log_callback = None
_collected: list[str] | None = None


def _log(level: int, text: bytes, user_data) -> None:
    """llama.cpp's log: collected inside `collected_log`, else its errors alone on stderr. (llama-cpp-python's
    own callback reads ggml's levels by an older numbering, in which WARN is ERROR and ERROR is DEBUG: with
    verbose=False it printed a context-size warning for every vocabulary-only load, dozens per export
    verification, and hid llama.cpp's errors.)"""
    import sys

    if _collected is not None:
        _collected.append(text.decode("utf-8", "replace"))
    elif level == GGML_LOG_LEVEL_ERROR:
        print(text.decode("utf-8", "replace"), end="", file=sys.stderr, flush=True)


@contextmanager
def collected_log():
    """Inside: every line llama.cpp logs goes into the list this yields (the whole text once the block ends),
    and none is printed."""
    global _collected
    runtime()
    _collected, lines = [], []
    try:
        yield lines
    finally:
        lines.extend("".join(_collected).splitlines())
        _collected = None


def requirement() -> str:
    """llama-cpp-python's range as fasttune's installed metadata gives it for the `gguf` extra."""
    import importlib.metadata

    try:
        declared = importlib.metadata.requires("fasttune") or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    for line in declared:
        spec, _, marker = line.partition(";")
        if spec.strip().startswith("llama-cpp-python") and f'extra == "{EXTRA}"' in marker:
            return spec.strip()
    raise FasttuneError(f"llama-cpp-python is not installed and fasttune's metadata does not name it (is fasttune "
                        f"installed?): run `bash scripts/install.sh --{EXTRA}`")


def install(say=None) -> None:
    """pip-install llama-cpp-python into this Python, its output (and progress) on the terminal."""
    import importlib
    import os
    import subprocess
    import sys

    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    spec = requirement()
    say(f"GGUF needs llama.cpp, which fasttune installs the first time it is used: pip is installing {spec}, "
        "compiling llama.cpp from source (minutes, once: benchmarks/README.md has the time measured); pip "
        f"caches the wheel. `bash scripts/install.sh --{EXTRA}` does this ahead of time.")
    env = {**os.environ, "CMAKE_ARGS": os.environ.get("CMAKE_ARGS", "-DGGML_NATIVE=OFF")}  # runs on any x86-64
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", spec], env=env)
    if done.returncode != 0:
        raise FasttuneError(f"pip could not install {spec} (exit code {done.returncode}; its output is above). "
                            "It compiles llama.cpp: it needs a C++ compiler and cmake")
    importlib.invalidate_caches()


def open_model(path: Path, n_ctx: int = 2048, n_threads: int = 1):
    """A `llama_cpp.Llama` for the file. One thread by default: on a machine with few cores, busy with
    other work, more threads compete for them and generate slower (benchmarks/README.md)."""
    return runtime().Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)


@contextmanager
def vocabulary(path: Path):
    """The file opened for its vocabulary and metadata alone (no weights are read), closed after."""
    llama_cpp = runtime()
    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        yield vocab
    finally:
        vocab.close()


def chat_template(path: Path) -> str:
    """The chat template stored in the GGUF's metadata (export writes the one the model trained with)."""
    with vocabulary(path) as vocab:
        template = vocab.metadata.get("tokenizer.chat_template")
    if template is None:
        raise ConfigError(f"{path}: the GGUF carries no chat template")
    return template


def context_of(llm) -> int:
    """An open model's trained context length, read from its metadata, which llama.cpp reads even in a
    vocabulary-only load (whose n_ctx_train says 0; n_ctx=0 would mean the whole trained context, 32k
    tokens of KV cache for Gemma 3, so greedy_tokens sizes it). Not through gguf.GGUFReader: it parses every
    token of the vocabulary in Python, seconds per call, which export verification paid once per prompt."""
    metadata = llm.metadata
    return int(metadata.get(f"{metadata.get('general.architecture')}.context_length", 2048))


def greedy_continue(llm, prompt_text: str, max_new_tokens: int) -> list[int]:
    """Greedy token ids from an open model (no sampling penalties: plain argmax), the end-of-turn
    token not included."""
    prompt = llm.tokenize(prompt_text.encode("utf-8"), add_bos=False, special=True)
    check_context(llm, len(prompt), max_new_tokens)
    return list(continuation(llm, prompt, max_new_tokens))


def check_context(llm, prompt_tokens: int, max_new_tokens: int) -> None:
    if prompt_tokens + max_new_tokens > llm.n_ctx():
        raise ConfigError(f"prompt ({prompt_tokens} tokens) + {max_new_tokens} new tokens exceed the context "
                          f"of {llm.n_ctx()} tokens")


def continuation(llm, prompt: list[int], max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None):
    """Token ids continuing `prompt` (ids), one at a time, until an end-of-generation token (not
    yielded) or `max_new_tokens`. Temperature 0 is greedy (plain argmax: what export verification and
    `fasttune chat` run); above it, sampling with temperature and top_p alone (no top-k, min-p or
    penalties), from `seed` (random when None). `fasttune serve` streams it."""
    import random

    llama_cpp = runtime()
    if temperature == 0:
        sampling = {"temp": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0}
    else:
        llm.set_seed(seed if seed is not None else random.getrandbits(31))
        sampling = {"temp": temperature, "top_k": 0, "top_p": top_p, "min_p": 0.0}
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    count = 0
    for token in llm.generate(prompt, **sampling, repeat_penalty=1.0, reset=True):
        if count >= max_new_tokens or llama_cpp.llama_vocab_is_eog(vocab, token):
            return
        count += 1
        yield token


@contextmanager
def sized_for(path: Path, prompt_texts: list[str], max_new_tokens: int):
    """The file opened with a context that holds the longest of the prompts and its answer, closed after:
    one load for all of them (Gemma's 262k-token vocabulary makes each load a second). The context is sized
    from the prompts' lengths (read with the vocabulary alone, no weights), at least 512 tokens and at most
    the context the model was trained with, beyond which greedy_continue refuses. (A fixed 512 once refused
    function-calling prompts: their tool schemas alone run past 500 tokens.)"""
    with vocabulary(path) as vocab:
        longest = max(len(vocab.tokenize(t.encode("utf-8"), add_bos=False, special=True)) for t in prompt_texts)
        trained = context_of(vocab)
    needed = longest + max_new_tokens
    llm = open_model(path, n_ctx=min(max(512, -(-needed // 256) * 256), trained))
    try:
        yield llm
    finally:
        llm.close()


def greedy_tokens(path: Path, prompt_text: str, max_new_tokens: int) -> list[int]:
    """The file's greedy answer to a rendered prompt, in a context opened for it and closed after."""
    with sized_for(path, [prompt_text], max_new_tokens) as llm:
        return greedy_continue(llm, prompt_text, max_new_tokens)


def forced_choices(llm, prompt_text: str, answer: list[int], start: int) -> list:
    """Teacher forcing on an open model: its greedy next token after the prompt and answer[:i], for each i
    from `start` on (None where it would end the turn). llama.cpp keeps the shared prefix in its KV cache
    between calls, so each position costs one token's decode."""
    prompt = llm.tokenize(prompt_text.encode("utf-8"), add_bos=False, special=True)
    return [next(iter(continuation(llm, prompt + answer[:i], 1)), None) for i in range(start, len(answer))]
