"""What eval.drift costs after training: `fasttune.drift.measure` timed on a finished run folder's
model (base + trained adapter, loaded as `fasttune eval` and `serve` load it), in float32 (what the
hf backend trains in on a CPU) and bfloat16 (Unsloth's CPU path where the CPU has AVX512-BF16, and
GPUs), for a few prompt counts and batch sizes. The figures it measures (KL, answers changed) are
recorded beside each time, so a faster variant can be seen to measure the same thing.

    fasttune run recipes/chat_sft.py model.backend=hf log.runs_dir=/tmp/drift-runs
    python benchmarks/drift_cost.py /tmp/drift-runs/chat_sft-*      # writes benchmarks/results/drift-cost-*.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from provenance import record, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder")
    parser.add_argument("--prompts", default="4,12,50", help="eval.drift_prompts values, comma-separated")
    parser.add_argument("--batch-sizes", default="8,50", help="eval.batch_size values, comma-separated")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args()

    import torch

    from fasttune.drift import PROMPTS, measure
    from fasttune.recipe import Recipe
    from fasttune.run_folder import open_run

    run = open_run(args.run)
    recipe = Recipe.from_dict(run.config)
    load, results = os.getloadavg(), []  # other work on the machine slows every figure: recorded
    for dtype in args.dtypes.split(","):
        model, tokenizer = run.load_model(dtype=getattr(torch, dtype), say=lambda *_: None)
        for count in (int(n) for n in args.prompts.split(",")):
            for batch in (int(n) for n in args.batch_sizes.split(",")):
                recipe.eval.batch_size = batch
                started = time.perf_counter()
                drift = measure(model, tokenizer, recipe.task, recipe.eval, PROMPTS[:count])
                seconds = round(time.perf_counter() - started, 2)
                figures = {k: v for k, v in drift.items() if k != "examples"}
                results.append({"dtype": dtype, "batch_size": batch, "seconds": seconds, **figures})
                print(json.dumps(results[-1]), flush=True)
    write_result("drift-cost", {"benchmark": "drift_cost", "run": str(args.run), "run_config": run.config,
                                "results": results, "load_average_1_5_15_min_at_start": load,
                                "provenance": record()})


if __name__ == "__main__":
    main()
