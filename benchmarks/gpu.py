"""GPU benchmark: QLoRA training speed and peak memory of the Unsloth and HF backends on Llama shapes.

On a CUDA machine, from the repository root (install as docs/install.md says for GPUs):

    bash scripts/install.sh
    python benchmarks/gpu.py                # 1b,8b x chat_sft,continued_pretraining x 2048x2,16384x1 x unsloth,hf
    python benchmarks/gpu.py --shapes 8b --lengths 16384x1 --backends unsloth train.packing=off
    python benchmarks/gpu.py --dry-run      # the planned commands; needs no GPU, torch or fasttune

Models are random-weight Llama-3.2-1B and Llama-3.1-8B shapes with the embedded SmolLM2 tokenizer,
built once on the GPU (in a child process) into --models-dir, so nothing is downloaded. Each run is
one `fasttune run` in its own process (Unsloth patches a process for good): 4-bit base, LoRA r=16 on
all linear layers, gradient checkpointing, no W&B, no samples. A row holds fasttune's own figures
from eval.json (non-padding tokens/s, training-only peak of torch.cuda.max_memory_allocated,
runtime), the steady tokens/s after the first two steps (from metrics.jsonl), the first and last
training loss and the eval loss before/after; a failed run (e.g. CUDA out of memory) is a row with
its error. Results go to benchmarks/results/gpu-<time>.json, rewritten
after every run, and are printed as a table with the unsloth/hf ratios. The parent process never
imports torch, so it holds no GPU memory while the runs train. Never part of the test run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import provenance  # benchmarks/provenance.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {  # hidden, layers, heads, kv heads, intermediate, tied embeddings
    "1b": (2048, 16, 32, 8, 8192, True),  # Llama-3.2-1B
    "3b": (3072, 28, 24, 8, 8192, True),  # Llama-3.2-3B
    "8b": (4096, 32, 32, 8, 14336, False),  # Llama-3.1-8B
}
WARMUP_STEPS = 2  # steps left out of the steady tokens/s (see steady_rate)
GPU_INFO = """
import json, torch
p = torch.cuda.get_device_properties(0)
print(json.dumps({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1), "cuda": torch.version.cuda}))
"""


def model_name(shape: str, vocab: int | None) -> str:
    """The folder a shape is built into: the tokenizer's vocabulary, or `vocab` rows (-v<vocab>)."""
    return shape if vocab is None else f"{shape}-v{vocab}"


def make_models(models_dir: Path, shapes: list[str], tokenizer_dir: str | None, vocab: int | None = None,
                context: int = 32768) -> None:
    """Build each missing shape on the GPU (bf16, seed 0) and save it with the tokenizer. Runs in a child.
    `vocab`: embedding rows when not the tokenizer's (Llama-3.1's 128,256 for memory; the tokenizer's
    ids stay below it)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if tokenizer_dir is None:
        from fasttune.models import EMBEDDED, resolve

        tokenizer_dir = resolve(EMBEDDED)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.set_default_dtype(torch.bfloat16)  # built in bf16 directly: no float32 copy of 8B on the GPU
    for shape in shapes:
        target = models_dir / model_name(shape, vocab)
        if (target / "config.json").is_file():
            continue
        hidden, layers, heads, kv_heads, intermediate, tied = SHAPES[shape]
        config = LlamaConfig(
            vocab_size=vocab or len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=kv_heads, intermediate_size=intermediate, tie_word_embeddings=tied,
            max_position_embeddings=context, rope_theta=5e5, rms_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        started = time.perf_counter()
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = LlamaForCausalLM(config)
        tmp = target.with_name(f".{target.name}.tmp")  # renamed when complete, so a folder with config.json is whole
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(target)
        params = sum(p.numel() for p in model.parameters()) / 1e9
        took = time.perf_counter() - started
        print(f"made {shape}: {params:.2f}B parameters in {took:.0f} s -> {target}", flush=True)
        del model
        torch.cuda.empty_cache()


def plan(args) -> list[dict]:
    """One planned run per shape x recipe x length x backend."""
    runs = []
    for shape, recipe, length, backend in itertools.product(args.shapes, args.recipes, args.lengths, args.backends):
        seq, batch = (int(n) for n in length.split("x"))
        steps = args.steps or (15 if seq < 8192 else 2)
        runs.append({"shape": shape, "recipe": recipe, "seq": seq, "batch": batch, "backend": backend,
                     "max_steps": steps})
    return runs


def command(run: dict, args, runs_dir: str) -> list[str]:
    """The `fasttune run` command line of one planned run."""
    cmd = [sys.executable, "-m", "fasttune.cli", "run", f"recipes/{run['recipe']}.py",
           f"model.name={args.models_dir / run['shape']}", f"model.backend={run['backend']}",
           f"data.max_seq_length={run['seq']}", f"train.batch_size={run['batch']}",
           f"train.max_steps={run['max_steps']}",
           "train.gradient_checkpointing=true", "model.lora.r=16", "model.lora.alpha=16", "model.load_in_4bit=true",
           "log.report_to=[]", "eval.samples=0", f"log.runs_dir={runs_dir}"]
    if run["recipe"] == "continued_pretraining":  # embedding_lr first: it is refused once embeddings are frozen
        cmd += ["train.embedding_lr=0", "model.lora.train_embeddings=false"]
    return cmd + args.overrides


def bench(run: dict, args) -> dict:
    """Train one planned run in its own process; its row, with `error` set when it failed."""
    row = {**run, "steps": None, "tokens_per_second": None, "steady_tokens_per_second": None, "train_tokens": None,
           "trained_tokens": None, "peak_gib": None, "train_runtime_s": None, "first_loss": None, "last_loss": None,
           "eval_loss_before": None, "eval_loss_after": None, "wall_s": None, "error": None}
    with tempfile.TemporaryDirectory(prefix="fasttune-gpu-runs-") as runs_dir:
        started = time.perf_counter()
        result = subprocess.run(command(run, args, runs_dir), check=False, cwd=ROOT, capture_output=True, text=True)
        row["wall_s"] = round(time.perf_counter() - started, 1)
        folders = list(Path(runs_dir).iterdir())
        if result.returncode != 0 or not folders or not (folders[0] / "eval.json").is_file():
            tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-15:]
            row["error"] = f"exit {result.returncode}: " + "\n".join(tail)
            return row
        summary = json.loads((folders[0] / "eval.json").read_text())
        records = [json.loads(line) for line in (folders[0] / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in records if "loss" in r]
    counted = [r for r in records if "tokens" in r and "time" in r]
    row.update(
        steps=summary.get("steps"), tokens_per_second=summary.get("tokens_per_second"),
        steady_tokens_per_second=steady_rate(counted),
        train_tokens=summary.get("train_tokens"), trained_tokens=summary.get("trained_tokens"),
        peak_gib=summary.get("train_peak_gpu_memory_gib"), train_runtime_s=summary.get("train_runtime_s"),
        first_loss=round(losses[0], 4) if losses else None, last_loss=round(losses[-1], 4) if losses else None,
        eval_loss_before=(summary.get("before") or {}).get("eval_loss"),
        eval_loss_after=(summary.get("after") or {}).get("eval_loss"),
    )
    return row


def steady_rate(records: list[dict], warmup: int = WARMUP_STEPS) -> float | None:
    """Tokens/s after the first `warmup` logged steps, from metrics.jsonl's cumulative `tokens` and wall
    `time`: the first steps hold one-off costs (Unsloth compiles each decoder block, kernels autotune)
    that a long run pays once. None when too few steps were logged to leave a span after warm-up."""
    if len(records) < warmup + 2:
        return None
    start, end = records[warmup - 1], records[-1]
    return round((end["tokens"] - start["tokens"]) / (end["time"] - start["time"]), 1)


def csv(text: str) -> list[str]:
    """A comma-separated option as a list."""
    return [part.strip() for part in text.split(",") if part.strip()]


def fmt(value) -> str:
    """A table cell: '-' for a missing figure."""
    return "-" if value is None else str(value)


def line(row: dict) -> str:
    """One table line for a finished run."""
    error = row["error"].splitlines()[-1][:90] if row["error"] else ""
    return (f"{row['shape']:5} {row['recipe']:22} {row['seq']:>6}x{row['batch']:<3} {row['backend']:8} "
            f"{fmt(row['steps']):>5} {fmt(row['tokens_per_second']):>9} {fmt(row['steady_tokens_per_second']):>9} "
            f"{fmt(row['peak_gib']):>8} "
            f"{fmt(row['train_runtime_s']):>9} {fmt(row['first_loss']):>7} -> {fmt(row['last_loss']):<7} "
            f"{fmt(row['eval_loss_before']):>7} -> {fmt(row['eval_loss_after']):<7} {fmt(row['wall_s']):>7}  {error}")


def print_ratios(rows: list[dict]) -> None:
    """unsloth/hf of peak memory and tokens/s for each (shape, recipe, length) where both finished."""
    done = {(r["shape"], r["recipe"], r["seq"], r["batch"], r["backend"]): r for r in rows if not r["error"]}
    for shape, recipe, seq, batch in dict.fromkeys(key[:4] for key in done):
        unsloth, hf = done.get((shape, recipe, seq, batch, "unsloth")), done.get((shape, recipe, seq, batch, "hf"))
        if unsloth and hf:
            parts = [f"{label} {unsloth[key] / hf[key]:.2f}x" if unsloth[key] and hf[key] else f"{label} -"
                     for label, key in (("peak memory", "peak_gib"), ("tokens/s", "tokens_per_second"),
                                                ("steady tokens/s", "steady_tokens_per_second"))]
            print(f"unsloth/hf {shape} {recipe} {seq}x{batch}: {', '.join(parts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=csv, default="1b,8b", help=f"model shapes, of {', '.join(SHAPES)}")
    parser.add_argument("--recipes", type=csv, default="chat_sft,continued_pretraining", help="recipes/<name>.py")
    parser.add_argument("--lengths", type=csv, default="2048x2,16384x1", help="max_seq_length x batch_size")
    parser.add_argument("--backends", type=csv, default="unsloth,hf")
    parser.add_argument("--steps", type=int,
                        help="optimizer steps of every run (default: 15; 2 at max_seq_length >= 8192)")
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "fasttune-gpu-models",
                        help="where the random-weight models are built once and reused")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: the embedded smollm2-135m-instruct's)")
    parser.add_argument("--dry-run", action="store_true", help="print the planned commands and exit")
    parser.add_argument("--make-models", action="store_true", help=argparse.SUPPRESS)  # the child that builds them
    parser.add_argument("overrides", nargs="*", help="extra recipe overrides for every run, e.g. train.packing=off")
    args = parser.parse_args()
    args.models_dir = args.models_dir.resolve()  # the runs load it from the repository root
    if unknown := [s for s in args.shapes if s not in SHAPES]:
        parser.error(f"unknown shape(s) {unknown}; known: {', '.join(SHAPES)}")
    if bad := [length for length in args.lengths if not re.fullmatch(r"\d+x\d+", length)]:
        parser.error(f"--lengths takes SEQxBATCH, e.g. 2048x2, got {bad}")
    if args.make_models:
        make_models(args.models_dir, args.shapes, args.tokenizer)
        return

    runs = plan(args)
    missing = [s for s in args.shapes if not (args.models_dir / s / "config.json").is_file()]
    build = [sys.executable, __file__, "--make-models", "--models-dir", str(args.models_dir),
             "--shapes", ",".join(missing), *(["--tokenizer", args.tokenizer] if args.tokenizer else [])]
    if args.dry_run:
        print(shlex.join(build) if missing else f"models present in {args.models_dir}")
        for run in runs:
            print(shlex.join(command(run, args, "<temporary folder>")))
        return

    probe = subprocess.run([sys.executable, "-c", GPU_INFO], check=False, capture_output=True, text=True)
    if probe.returncode != 0:
        raise SystemExit(f"no CUDA GPU to benchmark on (--dry-run shows the plan):\n{probe.stderr[-2000:]}")
    gpu = json.loads(probe.stdout.strip().splitlines()[-1])
    if missing and subprocess.run(build, check=False, cwd=ROOT).returncode != 0:
        raise SystemExit("building the models failed (output above)")

    out = ROOT / "benchmarks" / "results" / f"gpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {key: str(value) if isinstance(value, Path) else value
                for key, value in vars(args).items() if key not in ("dry_run", "make_models")}
    report = {"provenance": provenance.record(gpu={"name": gpu["name"], "memory_gib": gpu["memory_gib"],
                                                   "cuda": gpu["cuda"]}),
              "settings": settings, "results": []}
    print(f"{len(runs)} runs on {gpu['name']} ({gpu['memory_gib']} GiB), results in {out}")
    print(f"{'shape':5} {'recipe':22} {'seq x b':>10} {'backend':8} {'steps':>5} {'tok/s':>9} {'steady':>9} "
          f"{'peak GiB':>8} {'train s':>9} {'loss first -> last':>18} {'eval before->after':>18} {'wall s':>7}  error")
    for run in runs:
        report["results"].append(bench(run, args))
        out.write_text(json.dumps(report, indent=2) + "\n")  # after every run, so a cut-off benchmark keeps its rows
        print(line(report["results"][-1]), flush=True)
    print_ratios(report["results"])
    print(f"written to {out}")


if __name__ == "__main__":
    main()
