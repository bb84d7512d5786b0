"""The training loss on a large vocabulary with and without the full logits: Gemma 3 270M (262,144
tokens) as fasttune trains it, one LoRA step (forward and backward) timed two ways, each in a process
of its own for its peak memory:

- full:  the model's own forward with labels: transformers builds the logits for every position
         ([batch, seq, 262144], float32 for the loss) and takes the cross-entropy;
- fused: TRL's fused LM head (`trl.trainer.utils.add_fused_lm_head`, what TRL's SFTTrainer installs
         on both of fasttune's backends since TRL 1.16): the log-probabilities of the labels computed
         over tiles of positions, the logits never whole.

Then whole runs: `fasttune run recipes/chat_sft.py model.name=gemma3-270m` for a few steps on each
backend, with fasttune's labelled-positions trick (fasttune/trainer/labelled_head.py) and with it
taken out of TRICKS in that process (the A/B switch exists only here): tokens/s from eval.json.

    python benchmarks/large_vocab_loss.py            # writes benchmarks/results/large-vocab-loss-*.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from provenance import ROOT, record, write_result

CHILD = r'''
import json, re, sys, time
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
from fasttune import models
mode, dtype, batch, length, steps = sys.argv[1], getattr(torch, sys.argv[2]), *map(int, sys.argv[3:6])
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(models.resolve("gemma3-270m"), dtype=dtype)
if mode.startswith("fused"):
    from trl.trainer.utils import add_fused_lm_head
    add_fused_lm_head(model)
if mode == "fused_labelled":  # what fasttune's LabelledPositionsHead trick does on CPU
    import trl.trainer.utils as tu
    tu._use_triton = lambda device: True
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
model.train()
ids = torch.randint(10, 200000, (batch, length))
labels = ids.clone()
labels[:, : length // 2] = -100  # the prompt half carries no loss, as in chat SFT
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
def step():
    kwargs = {"fused_lm_head": True} if mode.startswith("fused") else {}
    loss = model(input_ids=ids, labels=labels, use_cache=False, **kwargs).loss
    loss.backward(); optimizer.step(); optimizer.zero_grad()
    return float(loss)
first = step()  # warm-up
started = time.perf_counter()
losses = [step() for _ in range(steps)]
seconds = (time.perf_counter() - started) / steps
peak = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024
print(json.dumps({"first_loss": first, "losses": losses, "seconds_per_step": round(seconds, 3),
                  "tokens_per_second": round(batch * length / seconds, 1), "peak_rss_bytes": peak}))
'''


RUN = r'''
import sys
import fasttune.trainer.tricks as tricks
if sys.argv[1] == "off":
    tricks.TRICKS = tuple(t for t in tricks.TRICKS if t.name != "labelled-positions LM head")
from fasttune.cli import main
main(sys.argv[2:])
'''


def whole_run(backend: str, trick: str, steps: int, runs) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory(dir=runs) as out:
        command = ["run", "recipes/chat_sft.py", "model.name=gemma3-270m", f"model.backend={backend}",
                   f"train.max_steps={steps}", "eval.samples=0", "eval.metric_rows=0", "eval.drift=false",
                   "data.eval=0.05", "log.report_to=[]", f"log.runs_dir={out}"]
        done = subprocess.run([sys.executable, "-c", RUN, trick, *command], capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            return {"backend": backend, "trick": trick, "error": done.stderr[-1500:]}
        [run] = list(__import__("pathlib").Path(out).iterdir())
        summary = json.loads((run / "eval.json").read_text())
        return {"backend": backend, "trick": trick, "steps": summary["steps"],
                "tokens_per_second": summary["tokens_per_second"], "train_runtime_s": summary["train_runtime_s"],
                "eval_loss": {"before": summary["before"]["eval_loss"], "after": summary["after"]["eval_loss"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--run-steps", type=int, default=10, help="steps of each whole run (0: none)")
    args = parser.parse_args()
    load, results = os.getloadavg(), []
    for dtype in args.dtypes.split(","):
        for mode in ("full", "fused", "fused_labelled"):
            done = subprocess.run([sys.executable, "-c", CHILD, mode, dtype, str(args.batch), str(args.length),
                                   str(args.steps)], capture_output=True, text=True, cwd=ROOT)
            row = {"mode": mode, "dtype": dtype, "batch": args.batch, "length": args.length}
            row.update(json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0
                       else {"error": done.stderr[-1500:]})
            results.append(row)
            print(json.dumps(row), flush=True)
    runs = []
    for backend in ("unsloth", "hf") if args.run_steps else ():
        for trick in ("off", "on"):
            runs.append(whole_run(backend, trick, args.run_steps, "/tmp"))
            print(json.dumps(runs[-1]), flush=True)
    write_result("large-vocab-loss", {"benchmark": "large_vocab_loss", "model": "gemma3-270m", "settings": vars(args),
                                      "results": results, "runs": runs, "load_average_1_5_15_min_at_start": load,
                                      "provenance": record()})


if __name__ == "__main__":
    main()
