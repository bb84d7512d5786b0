"""Emulated consumer cards: the longest max_seq_length that trains on an 8, 12, 16 or 24 GB card, measured,
beside the longest `fasttune plan` promises.

On a CUDA machine with more memory than the largest card, from the repository root:

    python benchmarks/gpu_cards.py            # 8b with Llama-3.1's vocabulary x r16 x unsloth,hf x 8,12,16,24GB
    python benchmarks/gpu_cards.py --shapes 1b,3b --ranks 16,32 --cards 15GB
    python benchmarks/gpu_cards.py --dry-run  # the plan's figures and the searches to run; no GPU needed

A card of N GB is N GiB of device memory (what GPU makers' "GB" are; a T4 leaves 15 of its 16 to the
user: --cards 15GB). The process is capped with torch.cuda.set_per_process_memory_fraction at N GiB
less the CUDA context it already holds, so the context counts as it does on the card, and
torch.cuda.mem_get_info reports that card (`emulate`), since Unsloth sizes its work from it.

One child process per (shape, backend, rank) loads the random-weight model once (gpu.py builds it: a
Llama shape with `--vocab` embedding rows), as fasttune loads it (4-bit QLoRA, all linear layers,
gradient checkpointing on), and searches each card in turn. An attempt at a length builds fasttune's
own trainer (continued pre-training's: every token trained) over 3 rows of random tokens and trains 3
steps at batch 1; it fits when they finish, and does not when CUDA runs out of memory. The search
starts at the plan's largest length, goes up by a quarter while it fits and down by a fifth while it
does not, then halves the gap to within 3%. Every attempt (fit or not, its peak allocated and
reserved memory, the plan's peak at that length, seconds) goes into
benchmarks/results/gpu-cards-<time>.json, rewritten after each one, so a run cut off keeps its rows.
Never part of the test run.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gpu  # benchmarks/gpu.py: the shapes and their builder
import provenance

ROOT = Path(__file__).resolve().parent.parent
STEPS = 3  # optimizer steps an attempt trains: the first can peak lower than the ones after it
GRAIN = 256  # lengths are multiples of this
CLOSE = 0.03  # the search stops when the largest fit and smallest failure are this close
CONTEXT = 131072  # the built models' max_position_embeddings (Llama-3.1's), so long lengths are in range


def card_recipe(model_dir: str, backend: str, rank: int, seq: int):
    """What every attempt trains: continued pre-training with LoRA `rank` on all linear layers, 4-bit,
    checkpointing on, batch 1, `STEPS` steps, nothing saved or reported."""
    from fasttune import Data, Log, Recipe, Train, tasks
    from fasttune.config import LoRA, Model

    return Recipe(task=tasks.ContinuedPretraining(), data=Data("random tokens", max_seq_length=seq),
                  model=Model(name=model_dir, backend=backend, load_in_4bit=True, lora=LoRA(r=rank, alpha=rank)),
                  train=Train(max_steps=STEPS, batch_size=1, gradient_checkpointing=True),
                  log=Log(report_to=[]))


def planned(model_dir: str, config: dict, backend: str, rank: int, cards: list[float]) -> dict:
    """The plan's largest length on each card, for this model and backend."""
    from fasttune import memory, plan

    shape = memory.Shape.from_config(config, model_dir)
    recipe = card_recipe(model_dir, backend, rank, 2048)
    return {str(card): plan.largest_length(recipe, shape, backend, 1, plan.usable_gib(card)) for card in cards}


def next_length(fits: dict[int, bool], start: int, limit: int) -> int | None:
    """The next length to try given the attempts so far ({length: fit}), or None when the search is done:
    up by a quarter from the largest fit while nothing has failed, down by a fifth from the smallest failure
    while nothing has fit, then the middle of the gap until it is within CLOSE (or GRAIN) of the fit."""
    grain = lambda n: max(GRAIN, int(n) // GRAIN * GRAIN)  # noqa: E731
    if not fits:
        return min(grain(start), limit)
    fit = max((n for n, ok in fits.items() if ok), default=None)
    fail = min((n for n, ok in fits.items() if not ok), default=None)
    if fail is None:
        return None if fit >= limit else min(grain(fit * 1.25 + GRAIN), limit)
    if fit is None:
        return None if fail <= GRAIN else grain(fail * 0.8)
    middle = grain((fit + fail) / 2)
    return None if fail - fit <= max(GRAIN, CLOSE * fit) or middle <= fit else middle


def emulate(card_gib: float, context: int, total: int) -> None:
    """Make this process a `card_gib` card: cap torch's allocator at the card less the CUDA `context`, and
    have torch.cuda.mem_get_info report the card's free and total memory. Unsloth reads free memory to
    size its cross-entropy chunks (half of it, at most 4 GiB, read once and cached: cleared here), its
    double-buffered checkpoint offload and its tiled MLP; the large GPU's real free memory would size
    them for that GPU and not for the card."""
    import torch

    card = int(card_gib * 2**30)
    torch.cuda.set_per_process_memory_fraction(max(card - context, 0) / total)
    torch.cuda.mem_get_info = lambda device=None: (max(card - context - torch.cuda.memory_reserved(device), 0), card)
    if "unsloth_zoo" in sys.modules:  # an HF-backend process never imports it
        from unsloth_zoo.fused_losses import cross_entropy_loss

        cross_entropy_loss._get_chunk_multiplier.cache_clear()  # clears the cached free-memory reading too


def unsloth_chunk_gib() -> float | None:
    """The cross-entropy chunk budget Unsloth settled on for this card (GiB); None on the HF backend."""
    if "unsloth_zoo" not in sys.modules:
        return None
    from unsloth_zoo.fused_losses import cross_entropy_loss

    return round(cross_entropy_loss._measured_target_gb(None), 3)


def attempt(recipe, model, tokenizer, seq: int) -> dict:
    """Train `recipe` at max_seq_length `seq` on the loaded model; what it took, or that it ran out of memory."""
    import gc

    import torch
    from datasets import Dataset

    from fasttune.trainer.build import RunHooks

    rows = torch.randint(0, len(tokenizer), (STEPS, seq), generator=torch.Generator().manual_seed(seq)).tolist()
    run = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, max_seq_length=seq))
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    started, error = time.perf_counter(), None
    with tempfile.TemporaryDirectory(prefix="fasttune-card-") as run_dir:
        try:
            trainer = run.task.trainer(run, model, tokenizer, Dataset.from_dict({"input_ids": rows, "labels": rows}),
                                       None, RunHooks(Path(run_dir), "card"))
            trainer.train()
        except (torch.OutOfMemoryError, RuntimeError) as failure:  # a kernel's own allocation fails as RuntimeError
            if "out of memory" not in str(failure).lower():
                raise
            error = str(failure).splitlines()[0][:300]
        trainer = None  # the optimizer's state and every activation go with it
    model.zero_grad(set_to_none=True)
    row = {"seq": seq, "fit": error is None, "error": error, "seconds": round(time.perf_counter() - started, 1),
           "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
           "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3)}
    gc.collect()
    torch.cuda.empty_cache()
    return row


def search_cards(job: dict, out: Path) -> None:
    """The child: load the model once, then search each card, appending every attempt to `out`."""
    import torch

    free, total = torch.cuda.mem_get_info()
    context = total - free  # the CUDA context (and the driver's share) before this process holds a tensor
    from fasttune import backends, memory, plan

    backend, _ = backends.choose(job["backend"])  # Unsloth, when asked for, imports before transformers
    recipe = card_recipe(job["model_dir"], backend.NAME, job["rank"], CONTEXT)
    model, tokenizer = backend.load(recipe.model, job["model_dir"], CONTEXT, True, 0)
    shape = memory.Shape.from_config(job["config"], job["model_dir"])
    for card in job["cards"]:
        emulate(card, context, total)
        fits: dict[int, bool] = {}
        while (seq := next_length(fits, job["planned"][str(card)] or GRAIN, CONTEXT)) is not None:
            row = attempt(recipe, model, tokenizer, seq)
            fits[seq] = row["fit"]
            row.update(shape=job["shape"], backend=backend.NAME, rank=job["rank"], card_gib=card,
                       context_gib=round(context / 2**30, 3), unsloth_chunk_gib=unsloth_chunk_gib(),
                       planned_peak_gib=round(plan.peak(recipe, shape, backend.NAME, seq, 1).total / 2**30, 3))
            append(out, row)
            print(f"{job['shape']} {backend.NAME} r{job['rank']} {card:g} GB  {seq:>6}  "
                  f"{'fits' if row['fit'] else 'out of memory':13} peak {row['peak_allocated_gib']} GiB "
                  f"(planned {row['planned_peak_gib']})  {row['seconds']} s", flush=True)
        largest = max((n for n, ok in fits.items() if ok), default=0)
        print(f"{job['shape']} {backend.NAME} r{job['rank']} {card:g} GB: longest {largest}, "
              f"planned {job['planned'][str(card)]}", flush=True)


def append(out: Path, row: dict, key: str = "attempts") -> None:
    """Add one row to the results file's `key` list and rewrite it whole (a rename, so it is never half
    written)."""
    report = json.loads(out.read_text())
    report[key].append(row)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)


def summary(report: dict) -> list[dict]:
    """Per (shape, backend, rank, card): the longest length measured to fit against the plan's."""
    rows = []
    key = lambda a: (a["shape"], a["backend"], a["rank"], a["card_gib"])  # noqa: E731
    for (shape, backend, rank, card), tries in itertools.groupby(sorted(report["attempts"], key=key), key=key):
        tries = list(tries)
        measured = max((a["seq"] for a in tries if a["fit"]), default=0)
        rows.append({"shape": shape, "backend": backend, "rank": rank, "card_gib": card, "measured": measured,
                     "planned": report["planned"][f"{shape} {backend} r{rank}"][str(card)],
                     "attempts": len(tries)})
    return rows


def shape_config(shape: str, vocab: int) -> dict:
    """The config.json gpu.make_models writes for `shape`, as far as the plan reads it (no model built)."""
    hidden, layers, heads, kv_heads, intermediate, tied = gpu.SHAPES[shape]
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "intermediate_size": intermediate, "vocab_size": vocab,
            "tie_word_embeddings": tied, "max_position_embeddings": CONTEXT}


def main() -> None:
    from fasttune import plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=gpu.csv, default="8b", help=f"model shapes, of {', '.join(gpu.SHAPES)}")
    parser.add_argument("--vocab", type=int, default=128256, help="embedding rows (default: Llama-3.1's)")
    parser.add_argument("--ranks", type=lambda s: [int(r) for r in gpu.csv(s)], default="16", help="LoRA ranks")
    parser.add_argument("--backends", type=gpu.csv, default="unsloth,hf")
    parser.add_argument("--cards", type=gpu.csv, default="8GB,12GB,16GB,24GB", help="card memory sizes")
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "fasttune-gpu-models",
                        help="where the random-weight models are built once and reused")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: the embedded smollm2-135m-instruct's)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan's lengths and the searches, and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one search job, as JSON
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--make-models", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        search_cards(json.loads(args.child), args.out)
        return
    args.models_dir = args.models_dir.resolve()
    if unknown := [s for s in args.shapes if s not in gpu.SHAPES]:
        parser.error(f"unknown shape(s) {unknown}; known: {', '.join(gpu.SHAPES)}")
    if args.make_models:
        gpu.make_models(args.models_dir, args.shapes, args.tokenizer, args.vocab, CONTEXT)
        return
    cards = [plan.parse_gpu(card) for card in args.cards]
    jobs = []
    for shape, backend, rank in itertools.product(args.shapes, args.backends, args.ranks):
        model_dir, config = str(args.models_dir / gpu.model_name(shape, args.vocab)), shape_config(shape, args.vocab)
        jobs.append({"shape": shape, "backend": backend, "rank": rank, "cards": cards, "model_dir": model_dir,
                     "config": config, "planned": planned(model_dir, config, backend, rank, cards)})
    for job in jobs:
        print(f"{job['shape']} (vocabulary {args.vocab}) {job['backend']} r{job['rank']}: the plan's longest "
              + ", ".join(f"{card:g} GB {length}" for card, length in zip(cards, job["planned"].values())))
    missing = [s for s in args.shapes if not (args.models_dir / gpu.model_name(s, args.vocab)).is_dir()]
    build = [sys.executable, __file__, "--make-models", "--models-dir", str(args.models_dir), "--shapes",
             ",".join(missing), "--vocab", str(args.vocab)]
    build += ["--tokenizer", args.tokenizer] if args.tokenizer else []
    if args.dry_run:
        print(shlex.join(build) if missing else f"models present in {args.models_dir}")
        return

    probe = subprocess.run([sys.executable, "-c", gpu.GPU_INFO], check=False, capture_output=True, text=True)
    if probe.returncode != 0:
        raise SystemExit(f"no CUDA GPU to measure on (--dry-run shows the plan):\n{probe.stderr[-2000:]}")
    card = json.loads(probe.stdout.strip().splitlines()[-1])
    if card["memory_gib"] < max(cards):
        raise SystemExit(f"{card['name']} has {card['memory_gib']} GiB: too little to stand in for {max(cards):g} GB")
    if missing and subprocess.run(build, check=False, cwd=ROOT).returncode != 0:
        raise SystemExit("building the models failed (output above)")
    out = provenance.write_result("gpu-cards", {
        "provenance": provenance.record(gpu={**card, "emulated_gib": cards}),
        "settings": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                        if k not in ("dry_run", "child", "out", "make_models")}, "steps": STEPS, "grain": GRAIN},
        "planned": {f"{j['shape']} {j['backend']} r{j['rank']}": j["planned"] for j in jobs},
        "attempts": [], "failed_searches": []})
    for job in jobs:  # a process each: Unsloth patches a process for good
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(job), "--out", str(out)], cwd=ROOT,
                              check=False, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            append(out, {**{k: job[k] for k in ("shape", "backend", "rank")}, "error": done.stderr.strip()[-3000:]},
                   "failed_searches")
            print(f"{job['shape']} {job['backend']} r{job['rank']} failed:\n{done.stderr[-1500:]}", flush=True)
    print(f"{'shape':5} {'backend':8} {'rank':>4} {'card':>6} {'measured':>9} {'planned':>8} {'plan/measured':>13}")
    for row in summary(json.loads(out.read_text())):
        ratio = f"{row['planned'] / row['measured']:.2f}" if row["measured"] else "-"
        print(f"{row['shape']:5} {row['backend']:8} {row['rank']:>4} {row['card_gib']:>4g}GB {row['measured']:>9} "
              f"{row['planned']:>8} {ratio:>13}")


if __name__ == "__main__":
    main()
