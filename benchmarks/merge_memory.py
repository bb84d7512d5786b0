"""Peak RAM of the merged export: fasttune's streamed merge against the whole-model merge (the base
loaded in float32 through peft), each in a process of its own so that its peak resident set is its
own. The adapters are made here: an r-16 LoRA on every attention and MLP projection with random B
(a trained adapter's shapes; the values do not change the memory), on each shipped model, and on
random bfloat16 checkpoints of Llama-3.2-1B/3B and Llama-3.1-8B shapes (128,256-token vocabulary,
5 GB shards, as published) written here shard by shard; the whole-model merge is not run on those
(it would need 4 bytes per parameter: 32 GB for 8B).

    python benchmarks/merge_memory.py                       # shipped models and 1b,3b,8b shapes
    python benchmarks/merge_memory.py --shapes ""           # shipped models only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import record, write_result

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SHAPES = {  # hidden, layers, heads, kv heads, intermediate, tied: Llama 3.x shapes
    "1b": (2048, 16, 32, 8, 8192, True),
    "3b": (3072, 28, 24, 8, 8192, True),
    "8b": (4096, 32, 32, 8, 14336, False),
}


PEAK = ("import re\n"
        "def peak():  # KiB; VmHWM is this process's own high-water mark (ru_maxrss keeps the forking parent's)\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n")


def make_shape(name: str, folder: Path, tokenizer_dir: Path, shard_bytes: int = 5 * 10**9) -> None:
    """A random bfloat16 checkpoint of a Llama shape, written shard by shard (never the whole model in
    memory), with a random r-16 adapter beside it in `folder / "adapter"`."""
    import torch
    from peft import LoraConfig
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, kv, inter, tied = SHAPES[name]
    config = LlamaConfig(vocab_size=128256, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv, intermediate_size=inter, tie_word_embeddings=tied, dtype="bfloat16")
    with torch.device("meta"):
        shapes = {n: p.shape for n, p in LlamaForCausalLM(config).state_dict().items()}
    if tied:
        shapes.pop("lm_head.weight", None)
    groups, size = [[]], 0
    for n, shape in shapes.items():
        if size and size + shape.numel() * 2 > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(n)
        size += shape.numel() * 2
    folder.mkdir(parents=True)
    weight_map = {}
    for i, group in enumerate(groups, 1):
        file = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: torch.randn(shapes[n], dtype=torch.bfloat16) * 0.02 for n in group}, folder / file,
                  metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(group, file))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config.save_pretrained(folder)
    adapter = folder / "adapter"
    lora = {}
    for n, shape in shapes.items():
        if n.endswith(".weight") and n.split(".")[-2] in TARGETS:
            key = "base_model.model." + n[: -len(".weight")]
            lora[f"{key}.lora_A.weight"] = torch.randn(16, shape[1]) * 0.01
            lora[f"{key}.lora_B.weight"] = torch.randn(shape[0], 16) * 0.01
    LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, task_type="CAUSAL_LM").save_pretrained(adapter)
    save_file(lora, adapter / "adapter_model.safetensors", metadata={"format": "pt"})
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(adapter)


def make_adapter(base: Path, folder: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fasttune.chat_template import set_chat_template

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, init_lora_weights=False)) \
        .save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(base)
    set_chat_template(tokenizer)  # as training saves it: the model's own, or its family's turns
    tokenizer.save_pretrained(folder)


def peak_of(base: Path, adapter: Path, out: Path, stream: bool) -> dict:
    """Merge in a child process; its own peak RSS (VmHWM) and wall time."""
    code = (PEAK + "import time\nfrom pathlib import Path\nfrom fasttune.export.merged import merge_folders\n"
            "t = time.perf_counter()\n"
            f"_, how = merge_folders(Path({str(base)!r}), Path({str(adapter)!r}), Path({str(out)!r}), "
            f"say=lambda *_: None, stream={stream})\n"
            "print(peak(), round(time.perf_counter() - t, 2), how)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kib, seconds, how = done.stdout.strip().splitlines()[-1].split(" ", 2)
    return {"peak_rss_bytes": int(kib) * 1024, "seconds": float(seconds), "merge": how}


def baseline() -> int:
    """The peak RSS of a process that imports what a merge imports and merges nothing."""
    code = (PEAK + "import torch, transformers, peft, safetensors\n"
            "from fasttune.export import merged\nprint(peak())")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m-instruct,gemma3-270m")
    parser.add_argument("--shapes", default="1b,3b,8b", help="Llama shapes written here at random (disk: 2x)")
    parser.add_argument("--scratch", default=None, help="where the shapes' checkpoints go (default: a temp folder)")
    args = parser.parse_args()

    from fasttune import models

    results, load = [], os.getloadavg()
    imports = baseline()
    for name in args.models.split(","):
        base = Path(models.resolve(name))
        shards = sorted(base.glob("*.safetensors"))
        with tempfile.TemporaryDirectory() as scratch:
            adapter = Path(scratch) / "adapter"
            make_adapter(base, adapter)
            row = {"model": name, "base": str(base), "largest_shard_bytes": max(s.stat().st_size for s in shards),
                   "shards": len(shards), "imports_only_peak_rss_bytes": imports}
            for stream in (True, False):
                row["streamed" if stream else "whole_model"] = peak_of(base, adapter, Path(scratch) / f"m{stream}",
                                                                       stream)
            results.append(row)
            print(json.dumps(row), flush=True)
    for name in filter(None, args.shapes.split(",")):
        with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
            base = Path(scratch) / name
            started = time.perf_counter()
            make_shape(name, base, Path(models.resolve(models.EMBEDDED)))
            shards = sorted(base.glob("*.safetensors"))
            made = round(time.perf_counter() - started)
            row = {"model": f"random Llama {name} shape (bfloat16)", "made_in_seconds": made,
                   "largest_shard_bytes": max(s.stat().st_size for s in shards), "shards": len(shards),
                   "checkpoint_bytes": sum(s.stat().st_size for s in shards), "imports_only_peak_rss_bytes": imports,
                   "streamed": peak_of(base, base / "adapter", Path(scratch) / "merged", True)}
            results.append(row)
            print(json.dumps(row), flush=True)
    write_result("merge-memory", {"benchmark": "merge_memory", "results": results,
                                  "load_average_1_5_15_min_at_start": load, "provenance": record()})


if __name__ == "__main__":
    main()
