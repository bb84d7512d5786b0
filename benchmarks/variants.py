"""Training variants side by side: the same recipe, data and steps, one variant changed at a time.

- SFT adapters, on recipes/chat_sft.py: plain LoRA, rsLoRA, DoRA, and full fine-tuning (every weight, at
  lr 2e-5: float32 master weights with bf16 autocast, and 16-bit weights) (eval loss before/after).
- GRPO losses, on recipes/grpo_math.py: dapo (TRL's default), grpo, bnpo, dr_grpo, and GSPO
  (loss grpo with sequence-level importance sampling): answer accuracy and total reward before/after.
- Preference losses, on recipes/dpo.py: DPO (sigmoid), ORPO, SimPO: preference accuracy and mean
  p(chosen) on the 40 held-out pairs, before/after; and KTO on recipes/kto.py (the same pairs, one
  reply each, marked good or bad): KTO accuracy and mean rewards on its 40 held-out replies.

Each variant is a `fasttune run` in its own process (the hf backend, so every variant takes the same
code path on any machine); its figures come from the run folder it leaves: eval.json (before, after,
tokens/s), trainer_args.json (what the trainer was built with, to show the option reached it) and the
process's own peak resident memory (wait4's ru_maxrss). A variant that fails is recorded with its
error and the next one runs.

    python benchmarks/variants.py                        # writes benchmarks/results/variants-*.json
    python benchmarks/variants.py --only lora,dora --sft-steps 4   # a quick look
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

COMMON = ["model.backend=hf", "log.report_to=[]", "eval.drift=false"]
SFT = ["recipes/chat_sft.py", "eval.samples=2"]
PREFERENCE = ["recipes/dpo.py", "eval.samples=0"]
UNPAIRED = ["recipes/kto.py", "eval.samples=0"]
FULL = ["model.full_finetune=true", "model.load_in_4bit=false"]
GRPO = ["recipes/grpo_math.py", "eval.samples=0", "eval.metric_rows=16", "eval.max_new_tokens=48",
        "task.max_completion_length=48"]
VARIANTS = {  # name: (recipe and its settings, the override that makes the variant, the trainer field shown)
    "lora": (SFT, [], None),
    "rslora": (SFT, ["model.lora.use_rslora=true"], None),
    "dora": (SFT, ["model.lora.use_dora=true"], None),
    "full": (SFT, [*FULL, "train.lr=2e-5"], "bf16"),
    "full-bf16-weights": (SFT, [*FULL, "train.lr=2e-5", "model.dtype=bfloat16"], "bf16"),
    "grpo-dapo": (GRPO, [], "loss_type"),
    "grpo-grpo": (GRPO, ["task.loss_type=grpo"], "loss_type"),
    "grpo-bnpo": (GRPO, ["task.loss_type=bnpo"], "loss_type"),
    "grpo-dr_grpo": (GRPO, ["task.loss_type=dr_grpo", "task.scale_rewards=none"], "loss_type"),
    "grpo-gspo": (GRPO, ["task.loss_type=grpo", "task.importance_sampling_level=sequence"],
                  "importance_sampling_level"),
    "dpo": (PREFERENCE, [], "loss_type"),
    "orpo": (PREFERENCE, ["task.loss_type=orpo"], None),
    "simpo": (PREFERENCE, ["task.loss_type=simpo", "task.beta=2.0"], "loss_type"),
    "kto": (UNPAIRED, [], "beta"),
}


def run_variant(name: str, steps: int, runs: Path) -> dict:
    """One variant's run; its figures from the run folder."""
    (recipe, *settings), overrides, shown = VARIANTS[name]
    command = [sys.executable, "-m", "fasttune.cli", "run", recipe, *COMMON, *settings, *overrides,
               f"train.max_steps={steps}", f"log.runs_dir={runs / name}"]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # the child's own peak resident memory
    wall = round(time.perf_counter() - started, 1)
    if os.waitstatus_to_exitcode(status) != 0:
        return {"variant": name, "overrides": overrides, "error": output[-2000:], "wall_s": wall}
    [run] = list((runs / name).iterdir())
    summary = json.loads((run / "eval.json").read_text())
    built = json.loads((run / "trainer_args.json").read_text())
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text()) if (run / "adapter").is_dir() else {}
    return {"variant": name, "overrides": overrides, "steps": summary["steps"], "wall_s": wall,
            "train_runtime_s": summary["train_runtime_s"], "tokens_per_second": summary["tokens_per_second"],
            "before": summary["before"], "after": summary["after"],
            "trainer": {"class": built["trainer"], **({shown: built["args"][shown]} if shown else {}),
                        "model": built.get("model")},
            "adapter": {k: adapter.get(k) for k in ("r", "lora_alpha", "use_rslora", "use_dora")},
            "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(VARIANTS), help="variants, comma-separated")
    parser.add_argument("--sft-steps", type=int, default=30)
    parser.add_argument("--grpo-steps", type=int, default=10)
    parser.add_argument("--preference-steps", type=int, default=20)
    args = parser.parse_args()
    load, results = os.getloadavg(), []  # other work on the machine slows every figure: recorded
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            recipe = VARIANTS[name][0][0]
            steps = {SFT[0]: args.sft_steps, GRPO[0]: args.grpo_steps, PREFERENCE[0]: args.preference_steps,
                     UNPAIRED[0]: args.preference_steps}[recipe]
            results.append(run_variant(name, steps, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    write_result("variants", {"benchmark": "variants", "settings": vars(args), "common_overrides": COMMON,
                              "sft": SFT, "grpo": GRPO, "preference": PREFERENCE, "unpaired": UNPAIRED,
                              "results": results,
                              "load_average_1_5_15_min_at_start": load, "provenance": record()})


if __name__ == "__main__":
    main()
