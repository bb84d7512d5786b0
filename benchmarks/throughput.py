"""Training throughput of the chat SFT recipe: fasttune's backends against plain TRL.

    python benchmarks/throughput.py [--steps 20] [--backends unsloth,unsloth+packed,hf,plain-trl] [--model DIR]
                                    [overrides...]

Each backend runs `fasttune run recipes/chat_sft.py` in its own process (Unsloth must be imported
first in a process), with W&B and samples off; `plain-trl` runs benchmarks/plain_trl.py, the
transformers + peft + TRL script a tutorial would have, on the same model, data, LoRA, batch,
length, learning rate and schedule. Each row has tokens/s, s/step, peak memory, the per-step
losses, the held-out loss of the trained adapter as benchmarks/heldout_loss.py scores every one
(speed compared at equal learning: the logged losses average over different tokens) and its
ratio to plain TRL. The machine is named with its
CPU and the measured matmul throughput (fp32 and bf16), and tokens/s is put against it. Results go
to benchmarks/results/throughput-<time>.json and are printed as a table. Never part of the test
run: on CPU this takes minutes. On a CUDA machine the same command runs every job on the GPU and
adds each run's training peak of GPU memory and the GPU's matmul throughput; --model names a local
model folder there (the embedded model is a GGUF that only this package's cache converts).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import provenance  # benchmarks/provenance.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent

# A wrapper process, so RUSAGE_CHILDREN holds the peak RSS of exactly one training run.
MEASURE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


def bench_plain(steps: int, model: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plain.json"
        command = [sys.executable, "-c", MEASURE, sys.executable, "benchmarks/plain_trl.py",
                   "--model", model, "--steps", str(steps), "--out", str(out),
                   "--adapter-out", str(Path(tmp) / "adapter")]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"plain-trl failed:\n{result.stderr[-3000:]}")
        summary = json.loads(out.read_text())
        judged = heldout_loss(model, Path(tmp) / "adapter")
    peak = int(result.stdout.rsplit("PEAK_RSS_KIB", 1)[1].split()[0])
    return _row("plain-trl", summary["steps"], summary["train_tokens"], summary["train_runtime_s"], peak, wall,
                None, [r["loss"] for r in summary["losses"]], judged, summary.get("train_peak_gpu_memory_gib"))


def heldout_loss(model: str, adapter: Path) -> float:
    """The adapter's loss on the held-out chat rows, by benchmarks/heldout_loss.py (the same judge for all)."""
    result = subprocess.run([sys.executable, "benchmarks/heldout_loss.py", "--model", model, "--adapter", str(adapter)],
                            cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"heldout_loss.py failed on {adapter}:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["heldout_loss"]


def _row(backend, steps, tokens, runtime, peak_kib, wall, eval_loss, losses, judged, peak_gpu=None) -> dict:
    return {"backend": backend, "steps": steps, "train_tokens": tokens, "train_runtime_s": runtime,
            "tokens_per_s": round(tokens / runtime, 1), "s_per_step": round(runtime / steps, 2),
            "peak_rss_gib": round(peak_kib / 2**20, 2), "peak_gpu_gib": peak_gpu, "wall_s": round(wall, 1),
            "eval_loss": eval_loss, "heldout_loss": judged,
            "losses": [round(v, 4) for v in losses], "final_loss": round(sum(losses[-3:]) / len(losses[-3:]), 4)}


def matmul_gflops(dtype_name: str, device: str = "cpu") -> float:
    """This machine's dense matrix throughput: the ceiling training's matmuls run against."""
    import torch

    n, repeats = (2048, 5) if device == "cpu" else (8192, 20)  # a GPU finishes 2048² too fast to time
    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up
    if device != "cpu":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device != "cpu":
        torch.cuda.synchronize()
    return round(2 * n**3 * repeats / (time.perf_counter() - started) / 1e9, 1)


def cpu_name() -> str:
    return provenance.cpu()["model"]


def bench(name: str, steps: int, model: str, extra: list[str]) -> dict:
    """One row. NAME is a backend, plain-trl, or a backend with '+packed' (train.packing=on, which on
    CPU is fasttune's packed batches: whole examples filling batch_size rows of max_seq_length tokens,
    laid end to end, each example attending to itself)."""
    if name == "plain-trl":
        return bench_plain(steps, model)
    backend, packed = name.removesuffix("+packed"), name.endswith("+packed")
    extra = [*extra, "train.packing=on"] if packed else extra
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "fasttune.cli", "run", "recipes/chat_sft.py",
                   f"model.backend={backend}", f"train.max_steps={steps}", "log.report_to=[]", "eval.samples=0",
                   f"log.runs_dir={runs}", f"model.name={model}", *extra]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{backend} failed:\n{result.stderr[-3000:]}")
        [run_dir] = list(Path(runs).iterdir())
        summary = json.loads((run_dir / "eval.json").read_text())
        losses = [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
                  if "loss" in r]
        judged = heldout_loss(model, run_dir / "adapter")
    peak = int(result.stdout.rsplit("PEAK_RSS_KIB", 1)[1].split()[0])
    return _row(name, summary["steps"], summary["train_tokens"], summary["train_runtime_s"], peak, wall,
                [summary["before"]["eval_loss"], summary["after"]["eval_loss"]], losses, judged,
                summary.get("train_peak_gpu_memory_gib"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--backends", default="unsloth,unsloth+packed,hf,plain-trl")
    parser.add_argument("--model", help="a local model folder (default: the embedded model, converted once)")
    parser.add_argument("overrides", nargs="*", help="extra recipe overrides, e.g. train.batch_size=8")
    args = parser.parse_args()
    import torch

    from fasttune import models

    model = args.model or models.resolve(models.EMBEDDED)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = {"cpu": cpu_name(), "arch": platform.machine(), "python": platform.python_version(),
               "torch": torch.__version__, "model": model,
               "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
               "matmul_gflops": {d: matmul_gflops(d, device) for d in ("float32", "bfloat16")}}
    source = provenance.record(gpu={"name": machine["gpu"]} if machine["gpu"] else None)
    rows = [bench(b, args.steps, model, args.overrides) for b in args.backends.split(",")]
    plain = next((r for r in rows if r["backend"] == "plain-trl"), None)
    for r in rows:
        r["vs_plain_trl"] = round(r["tokens_per_s"] / plain["tokens_per_s"], 2) if plain else None
    out = ROOT / "benchmarks" / "results" / f"throughput-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"provenance": source, "machine": machine, "overrides": args.overrides,
                               "results": rows}, indent=2) + "\n")
    flops = machine["matmul_gflops"]
    print(f"{machine['gpu'] or machine['cpu']}: matmul {flops['float32']} GFLOP/s fp32, "
          f"{flops['bfloat16']} GFLOP/s bf16")
    print(f"{'backend':15} {'tok/s':>7} {'x plain':>8} {'s/step':>7} {'peak GiB':>9} {'final loss':>11} "
          f"{'held-out loss':>14} {'GPU GiB':>8}")
    for r in rows:
        print(f"{r['backend']:15} {r['tokens_per_s']:>7} {r['vs_plain_trl'] or '':>8} {r['s_per_step']:>7} "
              f"{r['peak_rss_gib']:>9} {r['final_loss']:>11} {r['heldout_loss']:>14} {r['peak_gpu_gib'] or '':>8}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
