"""Merged export: the LoRA delta added into 16-bit base weights, saved in the plain HF layout.

The base weights always come from the original checkpoint (`model.name` resolved again), never from
the model as it was trained: a QLoRA run trained against a 4-bit copy, and merging into that copy
would bake the 4-bit rounding into every weight (or, dequantized and re-quantized, round twice).
Each merged weight is computed in float32 and stored in the checkpoint's 16-bit dtype (bfloat16 if
the checkpoint is bfloat16, otherwise float16).

The merge streams, one tensor at a time: a tensor is read from the base checkpoint, gets its LoRA
delta (W + scale·B·A; DoRA rescales each row to its trained magnitude; fully trained embeddings
replace theirs), and is written to the output before the next is read. So it needs about the
largest tensor of RAM beside Python and torch, not the model (loading the model in float32 took 4
bytes per parameter: 32 GB for an 8B model, on a Colab that has 12.7). Two readers and writers are
fasttune's own, because the library ones hold more than a tensor: safetensors' `save_file` builds
every tensor's bytes of a file in memory before writing, and its memory-mapped reader counts every
page it read as resident. The safetensors format itself (an 8-byte length, a JSON header of dtypes,
shapes and offsets, then the bytes) is small and fixed; the output is read back by transformers.

An adapter this does not handle — LoRA on embeddings, rank or alpha patterns, fan-in-fan-out
layers, a pre-quantized checkpoint — is merged the older way, the whole model loaded in float32
through peft, and the message says so and why.

A fully fine-tuned run (model.full_finetune) has no adapter: its model/ is the checkpoint, streamed
the same way with nothing added, only stored in 16-bit.
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path

from fasttune.errors import ExportError
from fasttune.run_folder import FinishedRun, write_dir

PREFIX = "base_model.model."  # peft's prefix on every key of a saved adapter
LORA_PARTS = (".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector")  # of a Linear layer's LoRA
DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64",
          "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def merge(run: FinishedRun, out_dir: Path, say=print) -> dict:
    """Write base + adapter merged into `out_dir` (via a temporary folder), or a fully fine-tuned run's
    weights in 16-bit; return what was done."""
    from fasttune import models

    if run.full_finetune:
        base_path, adapter = run.weights, None
        source = f"the run's fully trained weights ({run.weights}), trained from {run.model_name}"
    else:
        base_path, adapter = Path(run.base_path(say)), run.weights
        source = (f"{run.model_name} from {base_path} (the original checkpoint, not the training copy; "
                  f"{'dequantized from GGUF' if models.is_gguf_source(run.model_name) else 'as published'})")
    dtype, how = merge_folders(base_path, adapter, out_dir, say)
    return {"format": "merged", "path": str(out_dir), "dtype": dtype, "merge": how, "base_weights": source,
            "size_bytes": sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())}


def merge_folders(base_path: Path, adapter: Path | None, out_dir: Path, say=print,
                  stream: bool = True) -> tuple[str, str]:
    """Merge the adapter folder into the checkpoint folder, written to `out_dir`: (the dtype written, how
    it was merged). `adapter` None: the checkpoint alone, in 16-bit (a fully fine-tuned run's model/).
    `stream=False` takes the whole-model path (benchmarks/merge_memory.py compares them)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from fasttune.chat_template import end_of_turn_ids

    config = AutoConfig.from_pretrained(base_path)
    dtype = torch.bfloat16 if str(getattr(config, "dtype", None)).endswith("bfloat16") else torch.float16
    tokenizer = AutoTokenizer.from_pretrained(adapter or base_path)  # carries the chat template trained with
    stops = end_of_turn_ids(tokenizer)  # generation stops where training's turns end
    plan = StreamingMerge.plan(base_path, adapter, config) if stream else "asked for"
    if adapter is None and isinstance(plan, str):  # nothing to merge: a whole-model load would only convert
        raise ExportError(f"{base_path}: cannot be converted to 16-bit one tensor at a time ({plan})")
    if isinstance(plan, str):
        say(f"Merging {adapter} into {base_path} with the whole model in float32 memory: {plan}")
        write_dir(out_dir, lambda tmp: whole_model_merge(base_path, adapter, tmp, dtype, stops))
        how = f"whole model in float32 memory ({plan})"
    else:
        say(f"Merging {adapter} into {base_path}, one tensor at a time -> {dtype}" if adapter else
            f"Writing {base_path} in {dtype}, one tensor at a time")
        write_dir(out_dir, lambda tmp: (plan.write(tmp, dtype), tokenizer.save_pretrained(tmp),
                                        write_configs(base_path, config, tmp, dtype, stops)))
        how = "streamed, one tensor at a time"
    return str(dtype).replace("torch.", ""), how


def whole_model_merge(base_path: Path, adapter: Path, folder: Path, dtype, stops: list[int]) -> None:
    """peft's merge_and_unload on the base loaded in float32: any adapter peft loads, 4 bytes a parameter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload().to(dtype)
    merged.config.use_cache = True
    merged.generation_config.eos_token_id = stops
    merged.save_pretrained(folder)
    AutoTokenizer.from_pretrained(adapter).save_pretrained(folder)


def write_configs(base_path: Path, config, folder: Path, dtype, stops: list[int]) -> None:
    from transformers import GenerationConfig

    config.dtype = dtype
    config.use_cache = True
    config.save_pretrained(folder)
    try:
        generation = GenerationConfig.from_pretrained(base_path)
    except OSError:  # the checkpoint has none
        generation = GenerationConfig.from_model_config(config)
    generation.eos_token_id = stops
    generation.save_pretrained(folder)


def header(path: Path) -> tuple[dict, int]:
    """A safetensors file's header (name -> dtype, shape, data_offsets) and where its data begins."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(size)), 8 + size


class StreamingMerge:
    """The merge of one adapter into one checkpoint, planned from their headers before any weight is read."""

    def __init__(self, shards: dict[Path, dict], starts: dict[Path, int], adapter: Path | None, deltas: dict,
                 replaced: dict, scale: float, dora: bool):
        self.shards, self.starts, self.adapter = shards, starts, adapter
        self.deltas, self.replaced, self.scale, self.dora = deltas, replaced, scale, dora

    @classmethod
    def plan(cls, base: Path, adapter: Path | None, config) -> StreamingMerge | str:
        """The plan, or why this adapter or checkpoint needs the whole-model merge (`adapter` None: the
        checkpoint converted, nothing merged)."""
        if getattr(config, "quantization_config", None):
            return "the checkpoint is pre-quantized"
        index = base / "model.safetensors.index.json"
        files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else \
            ["model.safetensors"]
        if not all((base / f).is_file() for f in files):
            return "the checkpoint is not in safetensors files"
        shards, starts = {}, {}
        for name in files:
            shards[base / name], starts[base / name] = header(base / name)
            shards[base / name].pop("__metadata__", None)
        if adapter is None:
            return cls(shards, starts, None, {}, {}, 1.0, False)
        settings = json.loads((adapter / "adapter_config.json").read_text())
        for key, bad in (("peft_type", lambda v: v != "LORA"), ("fan_in_fan_out", bool), ("rank_pattern", bool),
                         ("alpha_pattern", bool), ("lora_bias", bool), ("bias", lambda v: v not in (None, "none"))):
            if bad(settings.get(key)):
                return f"adapter_config.json has {key}={settings.get(key)!r}"
        names = {n: shard for shard, tensors in shards.items() for n in tensors}
        adapter_file = adapter / "adapter_model.safetensors"
        keys, _ = header(adapter_file)
        keys.pop("__metadata__", None)
        odd = next((k for k in keys if ".lora_" in k and not k.endswith(LORA_PARTS)), None)
        if odd:
            return f"the adapter has {odd} (LoRA on an embedding or another layer kind)"
        deltas, replaced, dropped = {}, {}, set()
        for key in keys:
            name = key.removeprefix(PREFIX)
            for part in LORA_PARTS:
                if name.endswith(part):
                    target = name[: -len(part)] + ".weight"
                    deltas.setdefault(target, {})[part.split(".")[1]] = key
                    break
            else:
                if name in names:
                    replaced[name] = key
                elif name == "lm_head.weight" and getattr(config, "tie_word_embeddings", False):
                    dropped.add(key)  # tied to embed_tokens, which the adapter also holds (ensure_weight_tying)
                else:
                    return f"the adapter's {key} has no tensor in the checkpoint"
        for target, parts in deltas.items():
            linear = target in names and len(shards[names[target]][target]["shape"]) == 2
            if not linear or not {"lora_A", "lora_B"} <= set(parts):
                return f"{target}: not a Linear weight of the checkpoint with both LoRA matrices"
        if dropped and "model.embed_tokens.weight" not in replaced:
            return "a trained lm_head tied to embeddings the adapter does not hold"
        r, alpha = settings["r"], settings["lora_alpha"]
        scale = alpha / math.sqrt(r) if settings.get("use_rslora") else alpha / r
        return cls(shards, starts, adapter_file, deltas, replaced, scale, bool(settings.get("use_dora")))

    def write(self, folder: Path, dtype) -> None:
        """Each base shard as a shard of the same name in `folder`, plus the index when there are several."""
        from safetensors import safe_open

        folder.mkdir(parents=True, exist_ok=True)
        weight_map = {}
        # the adapter's matrices are small, each read when needed
        with safe_open(self.adapter, framework="pt") if self.adapter else nullcontext() as adapter:
            for shard, tensors in self.shards.items():
                order = sorted(tensors, key=lambda n: tensors[n]["data_offsets"][0])
                out = {n: (self.out_dtype(tensors[n]["dtype"], dtype), tensors[n]["shape"]) for n in order}
                with open(shard, "rb") as source, open(folder / shard.name, "wb") as target:
                    write_header(target, out)
                    for name in order:
                        entry, start = tensors[name], self.starts[shard]
                        if name in self.deltas or name in self.replaced:
                            pieces = [self.merged(name, read_tensor(source, start, entry), adapter)]
                        else:  # only converted: a slice at a time (Gemma's 262k-row embedding is 671 MB in float32)
                            pieces = read_rows(source, start, entry)
                        for piece in pieces:
                            target.write(as_bytes(piece.to(out[name][0])))
                        weight_map[name] = shard.name
        if len(self.shards) > 1:
            total = sum((folder / s.name).stat().st_size for s in self.shards)
            (folder / "model.safetensors.index.json").write_text(
                json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))

    @staticmethod
    def out_dtype(stored: str, dtype):
        import torch

        return dtype if stored in ("F32", "F16", "BF16", "F64") else getattr(torch, DTYPES[stored])

    def merged(self, name: str, weight, adapter):
        """A weight the adapter changes: replaced by its fully trained copy, or W + scale·B·A (DoRA rescaled)."""
        if name in self.replaced:
            return adapter.get_tensor(self.replaced[name])
        parts = self.deltas[name]
        w = weight.float()  # in place from here: one float32 copy of the weight, not four temporaries
        w.addmm_(adapter.get_tensor(parts["lora_B"]).float(), adapter.get_tensor(parts["lora_A"]).float(),
                 alpha=self.scale)
        if self.dora:  # peft's DoRA merge: each output row scaled to its trained magnitude
            w *= (adapter.get_tensor(parts["lora_magnitude_vector"]).float() / w.norm(dim=1)).unsqueeze(1)
        return w


def as_bytes(tensor) -> memoryview:
    """The tensor's memory as bytes, without a copy when it is contiguous."""
    import torch

    return memoryview(tensor.contiguous().view(-1).view(torch.uint8).numpy())


def read_tensor(source, start: int, entry: dict, rows: tuple[int, int] | None = None):
    """One tensor of a safetensors file (or its rows [first, last) along the first dimension), read
    into memory of its own (no memory map)."""
    import torch

    begin, end = entry["data_offsets"]
    shape = list(entry["shape"])
    if rows is not None:
        row_bytes = (end - begin) // shape[0]
        begin, end, shape[0] = begin + rows[0] * row_bytes, begin + rows[1] * row_bytes, rows[1] - rows[0]
    tensor = torch.empty(shape, dtype=getattr(torch, DTYPES[entry["dtype"]]))
    source.seek(start + begin)
    if end > begin:
        source.readinto(as_bytes(tensor))
    return tensor


def read_rows(source, start: int, entry: dict, chunk: int = 64 * 2**20):
    """The tensor in slices of about `chunk` bytes along its first dimension, in order."""
    shape, (begin, end) = entry["shape"], entry["data_offsets"]
    if len(shape) < 2 or end - begin <= chunk:
        yield read_tensor(source, start, entry)
        return
    step = max(1, shape[0] * chunk // (end - begin))
    for first in range(0, shape[0], step):
        yield read_tensor(source, start, entry, (first, min(first + step, shape[0])))


def write_header(target, tensors: dict) -> None:
    """The header of a safetensors file holding `tensors` (name -> (torch dtype, shape)) in this order."""
    import torch

    names = {getattr(torch, v): k for k, v in DTYPES.items()}
    entries, at = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        entries[name] = {"dtype": names[dtype], "shape": list(shape), "data_offsets": [at, at + size]}
        at += size
    text = json.dumps({"__metadata__": {"format": "pt"}, **entries}, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    target.write(len(text).to_bytes(8, "little") + text)
