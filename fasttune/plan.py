"""`fasttune plan` and the `auto` values: will a recipe fit a GPU, and at what batch size and length?

The model's shape comes from its config alone, never its weights: a folder's config.json, a hub id's
config.json (one small download), or a GGUF's header (the embedded model). `fasttune.memory` turns
shape and recipe into a training peak; this module searches it for the largest batch size and
max_seq_length a card holds, and resolves `train.batch_size=auto` / `data.max_seq_length=auto`
before a run starts.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path

from rich.text import Text

from fasttune import backends, memory, models
from fasttune.errors import ConfigError

CARDS_GIB = [8, 12, 16, 24, 40, 80]  # the consumer and Colab sizes the table shows without --gpu
CPU_BATCH = 4  # on CPU, memory is rarely the limit and speed stops growing past a few rows per step
MAX_BATCH = 256
LENGTH_STEP = 128


def usable_gib(card_gib: float) -> float:
    """What a run may plan to allocate on a card: the CUDA context (~0.5 GiB) and the caching
    allocator's fragmentation (~8% over the allocated peak) come off the top."""
    return card_gib * 0.92 - 0.5


def parse_gpu(text: str) -> float:
    """'16GB', '24GiB', '12' -> GiB (GPU makers' GB are GiB)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(gb|gib|g)?\s*", text.lower())
    if not match:
        raise ConfigError(f"--gpu: expected a memory size such as 16GB or 24, got {text!r}")
    return float(match.group(1))


def machine_ram_gib() -> float | None:
    """This machine's RAM in GiB (`fasttune env`'s figure; None where the OS does not say)."""
    from fasttune.env import memory_gib

    try:
        return memory_gib()
    except (ValueError, OSError, AttributeError):
        return None


def host_warning(breakdown: memory.Breakdown, ram_gib: float | None) -> str | None:
    """A warning when Unsloth's offloaded checkpoints would not fit this machine's RAM beside the rest of
    the process (taken as 3 GiB: Python, torch and the datasets), else None."""
    host = breakdown.host / memory.GIB
    if ram_gib is None or host + 3 <= ram_gib:
        return None
    return (f"the offloaded gradient checkpoints need about {host:.1f} GiB of CPU memory at this length, and this "
            f"machine has {ram_gib:.1f} GiB: lower data.max_seq_length or train.batch_size")


def detect_gpu() -> float | None:
    """This machine's GPU memory in GiB, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / memory.GIB


def model_config(name: str) -> dict:
    """The model's config as a transformers config.json dict, read without loading any weight."""
    if models.is_gguf_source(name):
        return gguf_config(models.gguf_copy(name)[0])
    path = Path(name).expanduser()
    if path.is_dir():
        return models.folder_config(path, name)
    from huggingface_hub import hf_hub_download

    models.hub_id(name)  # a path with no folder there is named as such, not looked up on the hub
    try:
        return json.loads(Path(hf_hub_download(name, "config.json")).read_text())
    except Exception as error:  # offline, unknown id, gated: all end the same way for the user
        raise ConfigError(models.load_failure(name, error)) from error


def check_model(recipe) -> None:
    """Refuse, before any weight loads or a run folder exists, a model that cannot train as the recipe
    asks: a folder without config.json or weights, a GGUF that is not whole, a hub id that cannot be
    reached (its config.json is fetched, as `fasttune plan` does), code of its own to run, and a
    max_seq_length beyond the model's context (positions it was never trained on; `auto` stops there)."""
    name = recipe.model.name
    if models.is_gguf_source(name):  # a converted copy was whole; else reading the header checks the file
        gguf, copy = models.gguf_copy(name)
        converted = copy / "config.json"
        config = json.loads(converted.read_text()) if converted.is_file() else gguf_config(gguf)
    else:
        if Path(name).expanduser().is_dir():
            models.check_folder(Path(name).expanduser(), name)
        config = model_config(name)
        models.check_code(config, name)
    context, seq = config.get("max_position_embeddings"), recipe.data.max_seq_length
    if seq != "auto" and isinstance(context, int) and seq > context:
        raise ConfigError(f"data.max_seq_length={seq} is beyond the context of {name} ({context} tokens, its config's "
                          f"max_position_embeddings): lower it to {context} or less, or set it to auto")


def gguf_config(path: Path) -> dict:
    """A GGUF header's hyper-parameters under config.json's names (memory-mapped: no tensor is read)."""
    stat = path.stat() if path.is_file() else None
    return dict(_header_config(path, stat and (stat.st_size, stat.st_mtime_ns)))


@functools.lru_cache(maxsize=8)
def _header_config(path: Path, version) -> dict:
    """gguf_config of one version of a file (size, mtime). Kept because gguf.GGUFReader parses every token
    of the vocabulary in Python (seconds for SmolLM2's 49k), and check, plan and auto settings each ask."""
    reader = models.read_gguf(path)

    def field(key: str):
        found = reader.fields.get(key)
        return found.contents() if found is not None else None

    arch = field("general.architecture")
    names = {"hidden_size": "embedding_length", "num_hidden_layers": "block_count",
             "num_attention_heads": "attention.head_count", "num_key_value_heads": "attention.head_count_kv",
             "head_dim": "attention.key_length", "intermediate_size": "feed_forward_length",
             "max_position_embeddings": "context_length", "vocab_size": "vocab_size"}
    config = {key: field(f"{arch}.{gguf_key}") for key, gguf_key in names.items()}
    if config["vocab_size"] is None and "tokenizer.ggml.tokens" in reader.fields:
        config["vocab_size"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    config["tie_word_embeddings"] = not any(t.name == "output.weight" for t in reader.tensors)
    return {key: value for key, value in config.items() if value is not None}


def backend_for(recipe) -> str:
    """The name of the backend `fasttune run` would pick on a GPU machine (`backends.on_gpu`)."""
    return backends.on_gpu(recipe.model.backend).NAME


def peak(recipe, shape: memory.Shape, backend: str, seq: int, batch: int) -> memory.Breakdown:
    """The recipe's training peak at max_seq_length `seq` and batch size `batch` (every row full length:
    what packing gives, and the worst case without it), as many sequences a row as the task runs (DPO: 2)."""
    rows = batch * recipe.task.sequences_per_row
    lora = recipe.model.lora
    return memory.estimate(shape, backend=backends.named(backend).MEMORY, load_in_4bit=recipe.model.load_in_4bit,
                           lora_r=lora.r, targets=lora.target_modules, train_embeddings=lora.train_embeddings,
                           tokens=rows * seq, checkpointing=recipe.train.checkpointing(gpu=True),
                           full_weight_bytes=full_weight_bytes(recipe.model))


def full_weight_bytes(model) -> int:
    """Bytes of each weight in a full fine-tuning (float32 unless model.dtype is 16-bit: precision.py's
    rule); 0 for LoRA."""
    if not model.full_finetune:
        return 0
    return 2 if model.dtype in ("bfloat16", "float16") else 4


def largest_batch(recipe, shape, backend: str, seq: int, usable: float) -> int:
    """The largest batch size (up to MAX_BATCH) whose peak fits `usable` GiB at `seq`; 0 when none does."""
    fits = [b for b in range(1, MAX_BATCH + 1) if peak(recipe, shape, backend, seq, b).total / memory.GIB <= usable]
    return fits[-1] if fits else 0


def largest_length(recipe, shape, backend: str, batch: int, usable: float) -> int:
    """The largest multiple of LENGTH_STEP (up to the model's context) that fits at `batch`; 0 when none does."""
    lengths = range(LENGTH_STEP, shape.context + 1, LENGTH_STEP)
    fits = [n for n in lengths if peak(recipe, shape, backend, n, batch).total / memory.GIB <= usable]
    return fits[-1] if fits else 0


def resolve_auto(recipe, longest_row, say=print):
    """A copy of `recipe` with its `auto` settings made what they are on this machine, said aloud.

    gradient_checkpointing=auto: on with a GPU, off on CPU. max_seq_length=auto: the longest training
    row (`longest_row()`, tokenized only when asked), rounded up to a multiple of 64, at most the
    model's context and, on a GPU, what fits at the batch size (1 when that is auto too).
    batch_size=auto: on a GPU the largest that fits at that length; on CPU CPU_BATCH."""
    data, train = recipe.data, recipe.train
    card = detect_gpu()
    if train.gradient_checkpointing == "auto":
        train = dataclasses.replace(train, gradient_checkpointing=train.checkpointing(gpu=card is not None))
        recipe = dataclasses.replace(recipe, train=train)
        say(f"train.gradient_checkpointing=auto: {'on (GPU)' if card else 'off (CPU)'}")
    if data.max_seq_length != "auto" and train.batch_size != "auto":
        return recipe
    shape = memory.Shape.from_config(model_config(recipe.model.name), recipe.model.name)
    backend = backend_for(recipe)
    usable = usable_gib(card) if card else None
    seq, batch = data.max_seq_length, train.batch_size
    if seq == "auto":
        seq = min(-(-longest_row() // 64) * 64, shape.context)
        if usable is not None:
            room = largest_length(recipe, shape, backend, 1 if batch == "auto" else batch, usable)
            seq = min(seq, room) if room else seq
        say(f"data.max_seq_length=auto: {seq} (longest training row, model context {shape.context}"
            f"{f', {card:.0f} GiB GPU' if card else ''})")
    if batch == "auto":
        batch = largest_batch(recipe, shape, backend, seq, usable) if usable is not None else CPU_BATCH
        say(f"train.batch_size=auto: {batch} "
            f"({f'fits {card:.0f} GiB at {seq} tokens' if usable is not None else 'CPU'})")
    if usable is not None:
        at = peak(recipe, shape, backend, seq, max(batch, 1))
        warning = host_warning(at, machine_ram_gib()) if batch else None
        if warning:
            say(f"Warning: {warning}")
        if not batch or at.total / memory.GIB > usable:
            raise ConfigError(f"batch size {max(batch, 1)} at max_seq_length {seq} needs about "
                              f"{at.total / memory.GIB:.1f} GiB; this {card:.0f} GiB GPU has {usable:.1f} GiB to "
                              "give. Lower data.max_seq_length, or turn on train.gradient_checkpointing / "
                              "model.load_in_4bit (`fasttune plan` shows the options)")
    return dataclasses.replace(recipe, data=dataclasses.replace(data, max_seq_length=seq),
                               train=dataclasses.replace(train, batch_size=batch))


def report(recipe, card_gib: float | None) -> dict:
    """The plan as a JSON-ready dict: the model's shape, the peak at the recipe's settings broken down,
    and per card (the one given, or CARDS_GIB) whether it fits and the largest batch and length that do."""
    shape = memory.Shape.from_config(model_config(recipe.model.name), recipe.model.name)
    backend, lora = backend_for(recipe), recipe.model.lora
    seq, batch = recipe.data.max_seq_length, recipe.train.batch_size
    cards = []
    for card in [card_gib] if card_gib else CARDS_GIB:
        usable = usable_gib(card)
        s = seq if seq != "auto" else largest_length(recipe, shape, backend, 1 if batch == "auto" else batch, usable)
        b = batch if batch != "auto" else (largest_batch(recipe, shape, backend, s, usable) if s else 0)
        total = peak(recipe, shape, backend, s, b).total / memory.GIB if s and b else None
        cards.append({"gpu_gib": card, "usable_gib": round(usable, 2), "max_seq_length": s, "batch_size": b,
                      "peak_gib": round(total, 2) if total else None, "fits": bool(total) and total <= usable,
                      "largest_batch": largest_batch(recipe, shape, backend, s, usable) if s else 0,
                      "largest_max_seq_length": largest_length(recipe, shape, backend, b or 1, usable)})
    at = (seq, batch) if "auto" not in (seq, batch) else (cards[-1]["max_seq_length"], cards[-1]["batch_size"])
    at_peak = peak(recipe, shape, backend, *at) if all(at) else None
    breakdown = at_peak.gib() if at_peak else {}
    ram = machine_ram_gib()
    notes = [note for applies, note in ((lora.use_dora, DORA_NOTE), (recipe.model.full_finetune, FULL_NOTE)) if applies]
    return {"recipe": recipe.name, "model": recipe.model.name, "params": shape.params(),
            "shape": dataclasses.asdict(shape), "backend": backend, "load_in_4bit": recipe.model.load_in_4bit,
            "full_finetune": recipe.model.full_finetune, "full_weight_bytes": full_weight_bytes(recipe.model),
            "lora_r": lora.r, "lora_targets": list(lora.target_modules),
            "gradient_checkpointing": recipe.train.checkpointing(gpu=True),
            "gradient_checkpointing_auto": recipe.train.gradient_checkpointing == "auto",
            "max_seq_length": at[0], "batch_size": at[1], "peak_gib": {k: round(v, 2) for k, v in breakdown.items()},
            "host_gib": round(at_peak.host / memory.GIB, 2) if at_peak else None, "machine_ram_gib": ram,
            "host_warning": host_warning(at_peak, ram) if at_peak else None,
            "cards": cards, "not_counted": notes}


FULL_NOTE = ("model.full_finetune: the estimate counts a weight, a gradient and AdamW's two moments per parameter, "
             "but no full fine-tuning has been measured on a GPU, so it is not calibrated as the LoRA figures are; "
             "DPO's reference model, a second copy of the weights, is not counted")
DORA_NOTE = ("model.lora.use_dora: DoRA's extra memory is not counted here (each adapted weight's norm is "
             "recomputed every step); on the CPU demo it raised the peak by 28% (benchmarks/README.md, "
             "Training variants), and no GPU figure has been measured")


def print_report(plan: dict, say) -> None:
    shape = plan["shape"]
    params = f"{plan['params'] / 1e9:.2f}B" if plan["params"] >= 1e9 else f"{plan['params'] / 1e6:.1f}M"
    say(Text.assemble((plan["recipe"], "bold"), f" on {plan['model']}: {params} parameters (hidden {shape['hidden']}, "
                      f"{shape['layers']} layers, vocabulary {shape['vocab']}, context {shape['context']})"))
    trains = (f"full fine-tuning, every weight and its AdamW state in {plan['full_weight_bytes'] * 8}-bit"
              if plan["full_finetune"] else f"{'4-bit' if plan['load_in_4bit'] else '16-bit'} base, LoRA "
              f"r={plan['lora_r']} on {len(plan['lora_targets'])} layer types")
    say(f"backend {plan['backend']}, {trains}, gradient checkpointing "
        f"{'on' if plan['gradient_checkpointing'] else 'off'}"
        f"{' (auto: on with a GPU)' if plan['gradient_checkpointing_auto'] else ''}")
    if plan["peak_gib"]:
        say(f"\nEstimated training peak on a GPU at batch {plan['batch_size']} x {plan['max_seq_length']} tokens:")
        for part, gib in plan["peak_gib"].items():
            say(f"  {part:<18} {gib:7.2f} GiB", highlight=False)
        if plan["host_gib"]:
            say(f"and in CPU memory, the offloaded gradient checkpoints: {plan['host_gib']:.2f} GiB", highlight=False)
        if plan["host_warning"]:
            say(f"Warning: {plan['host_warning']}", highlight=False)
    say(f"\n  GPU    usable   batch x length   peak     fits   largest batch   largest max_seq_length"
        f"\n{'(GiB)':>15}{'(GiB)':>25}{'at that length':>23}{'at that batch':>25}", highlight=False)
    for c in plan["cards"]:
        peak_text = f"{c['peak_gib']:.1f}" if c["peak_gib"] else "-"
        say(f"  {c['gpu_gib']:>3g} GB {c['usable_gib']:6.1f}   {c['batch_size']:>5} x {c['max_seq_length']:<6}  "
            f"{peak_text:>6}   {'yes' if c['fits'] else 'no':<5}  {c['largest_batch']:>13}   "
            f"{c['largest_max_seq_length']:>22}", highlight=False)
    say("\nAn estimate from the model's config (weights, LoRA + AdamW, activations, logits), calibrated on "
        "8B runs measured on an H100, within 20% of 1B runs on an H200; usable = 92% of the card less 0.5 GiB "
        "for the CUDA context.", highlight=False)
    for note in plan["not_counted"]:
        say(f"Not in the estimate: {note}.", highlight=False)
