"""The chat recipe on each shipped model, trained as shipped and exported to merged weights and GGUF
f16 and q8_0, each GGUF verified against the merged model on every held-out prompt: how many greedy
tokens agree (as answered, and given the merged model's answer so far), whether every answer stops on
the end-of-turn token, and whether the GGUF's template and the Modelfile prompt the model as training
did. One `fasttune run` per model, in a process of its own.

    python benchmarks/model_exports.py                        # both shipped models
    python benchmarks/model_exports.py --models gemma3-270m   # writes benchmarks/results/model-exports-*.json
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

from provenance import ROOT, record, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m-instruct,gemma3-270m")
    parser.add_argument("--quants", default="f16,q8_0")
    parser.add_argument("--prompts", type=int, default=40, help="held-out prompts verified (the recipe has 40)")
    parser.add_argument("--tokens", type=int, default=48, help="greedy tokens per prompt, at most")
    args = parser.parse_args()

    load, results = os.getloadavg(), []  # other work on the machine slows every figure: recorded
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as runs:
            command = ["fasttune", "run", "recipes/chat_sft.py", f"model.name={name}", "eval.drift=false",
                       "log.report_to=[]", "export.formats=[merged,gguf]", f"export.quants=[{args.quants}]",
                       f"export.verify_prompts={args.prompts}", f"export.verify_tokens={args.tokens}",
                       f"log.runs_dir={runs}"]
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "fasttune.cli", *command[1:]], cwd=ROOT)
            wall = round(time.perf_counter() - started, 1)
            if done.returncode != 0:
                sys.exit(f"{' '.join(command)} failed with exit code {done.returncode}")
            [run] = Path(runs).iterdir()
            summary = json.loads((run / "eval.json").read_text())
            exports = json.loads((run / "export" / "export.json").read_text())["exports"]
        for item in exports:
            item.pop("path", None), item.pop("modelfile", None)  # in a folder that is gone
        results.append({"model": name, "command": " ".join(command[:-1]), "wall_s": wall,
                        "eval": {k: summary[k] for k in ("before", "after", "steps", "tokens_per_second")
                                 if k in summary},
                        "exports": exports})
        gguf = [e for e in exports if e["format"] == "gguf"]
        for e in gguf:
            v = e["verification"]
            print(f"{name} {e['quant']}: {v['matched_tokens']}/{v['total_tokens']} as answered, "
                  f"{v['next_token_matches']}/{v['total_tokens']} given the merged answer so far", flush=True)
    write_result("model-exports", {"benchmark": "model_exports", "results": results,
                                   "load_average_1_5_15_min_at_start": load, "provenance": record()})


if __name__ == "__main__":
    main()
