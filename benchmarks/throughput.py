"""Training throughput of the chat SFT recipe on each backend: tokens/s, s/step and peak memory.

    python benchmarks/throughput.py [--steps 20] [--backends unsloth,hf] [extra overrides...]

Each backend runs `fasttune run recipes/chat_sft.py` in its own process (Unsloth must be imported
first in a process), with W&B and samples off. Results go to benchmarks/results/throughput-<time>.json
and are printed as a table. Never part of the test run: on CPU this takes minutes.
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

ROOT = Path(__file__).resolve().parent.parent

# A wrapper process, so RUSAGE_CHILDREN holds the peak RSS of exactly one training run.
MEASURE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


def bench(backend: str, steps: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "fasttune.cli", "run", "recipes/chat_sft.py",
                   f"model.backend={backend}", f"train.max_steps={steps}", "log.report_to=[]", "eval.samples=0",
                   f"log.runs_dir={runs}", *extra]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{backend} failed:\n{result.stderr[-3000:]}")
        [run_dir] = list(Path(runs).iterdir())
        summary = json.loads((run_dir / "eval.json").read_text())
    peak = int(result.stdout.rsplit("PEAK_RSS_KIB", 1)[1].split()[0])
    return {
        "backend": backend,
        "steps": summary["steps"],
        "train_tokens": summary["train_tokens"],
        "train_runtime_s": summary["train_runtime_s"],
        "tokens_per_s": round(summary["train_tokens"] / summary["train_runtime_s"], 1),
        "s_per_step": round(summary["train_runtime_s"] / summary["steps"], 2),
        "peak_rss_gib": round(peak / 2**20, 2),
        "wall_s": round(wall, 1),
        "eval_loss": [summary["before"]["eval_loss"], summary["after"]["eval_loss"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--backends", default="unsloth,hf")
    parser.add_argument("overrides", nargs="*", help="extra recipe overrides, e.g. train.batch_size=8")
    args = parser.parse_args()
    rows = [bench(b, args.steps, args.overrides) for b in args.backends.split(",")]
    out = ROOT / "benchmarks" / "results" / f"throughput-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                               "overrides": args.overrides, "results": rows}, indent=2) + "\n")
    print(f"{'backend':8} {'tok/s':>7} {'s/step':>7} {'peak GiB':>9} {'wall s':>7}  eval loss")
    for r in rows:
        print(f"{r['backend']:8} {r['tokens_per_s']:>7} {r['s_per_step']:>7} {r['peak_rss_gib']:>9} {r['wall_s']:>7}  "
              f"{r['eval_loss'][0]} -> {r['eval_loss'][1]}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
