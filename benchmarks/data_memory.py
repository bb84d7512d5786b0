"""Peak memory of the data path, before and after it streamed: `fasttune check` on 1M chat rows, and a
`fasttune run` up to its first training step on 100k rows (hf backend, one step, no samples).

The rows are the chat recipe's training rows, cycled and numbered, written to a temporary folder
(never the repository). The code measured "before" is another commit (`--before`, default `main`),
exported with `git archive` into that folder; "after" is this checkout. Each command runs as a child
process whose own peak resident memory comes back from wait4 (ru_maxrss), so runs do not mask each
other. The run is measured on the shipped 320 rows too: what the model and one step take, so that the
difference is what the rows cost.

    python benchmarks/data_memory.py                       # writes benchmarks/results/data-memory-*.json
    python benchmarks/data_memory.py --check-rows 20000 --run-rows 2000 --before HEAD   # a quick look
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import ROOT, record

CHAT = ROOT / "recipes" / "data" / "chat_train.jsonl"
HELD_OUT = 8  # rows of the recipe's eval file: the run's eval loss before and after stays short


def write_rows(path: Path, count: int) -> Path:
    """`count` chat rows: the recipe's, cycled, each user turn numbered so that no two rows are equal."""
    rows = [json.loads(line) for line in CHAT.read_text().splitlines()]
    with path.open("w") as f:
        for i, row in zip(range(count), itertools.cycle(rows)):
            messages = [dict(m) for m in row["messages"]]
            first = next(m for m in messages if m["role"] == "user")
            first["content"] += f" (#{i})"
            f.write(json.dumps({"messages": messages}) + "\n")
    return path


def peak(command: list[str], cwd: Path) -> dict:
    """Run `command` in `cwd`; its peak RSS (GiB) and wall time. A failure stops the benchmark."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(cwd)}
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(command)} (in {cwd}) failed:\n{stderr[-3000:]}")
    return {"peak_rss_gib": round(usage.ru_maxrss / 2**20, 3), "wall_s": round(time.perf_counter() - started, 1)}


def export(ref: str, folder: Path) -> str:
    """Commit `ref`'s tree in `folder`, which its children import fasttune from (checked); its full sha."""
    sha = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    folder.mkdir()
    archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    found = subprocess.run([sys.executable, "-c", "import fasttune; print(fasttune.__file__)"], cwd=folder,
                           env={**os.environ, "PYTHONPATH": str(folder)}, capture_output=True, text=True).stdout
    assert found.startswith(str(folder)), f"the exported tree is not what its children import: {found}"
    return sha


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-rows", type=int, default=1_000_000)
    parser.add_argument("--run-rows", type=int, default=100_000)
    parser.add_argument("--before", default="main", help="the commit measured as 'before' [main]")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fasttune-data-memory-"))
    try:
        check_data = write_rows(work / f"chat-{args.check_rows}.jsonl", args.check_rows)
        run_data = write_rows(work / f"chat-{args.run_rows}.jsonl", args.run_rows)
        held_out = work / "eval.jsonl"
        held_out.write_text("".join((ROOT / "recipes/data/chat_eval.jsonl").read_text().splitlines(True)[:HELD_OUT]))
        trees = {"before": (work / "before", export(args.before, work / "before")), "after": (ROOT, None)}
        fasttune = [sys.executable, "-m", "fasttune.cli"]
        commands = {
            "check": [*fasttune, "check", "recipes/chat_sft.py", f"data.path={check_data}", f"data.eval={held_out}",
                      "--json"],
            "run": [*fasttune, "run", "recipes/chat_sft.py", f"data.path={run_data}", f"data.eval={held_out}",
                    "model.backend=hf", "train.max_steps=1", "eval.samples=0", "log.report_to=[]",
                    f"log.runs_dir={work / 'runs'}"],
        }
        commands["run_shipped_rows"] = [a for a in commands["run"] if not a.startswith("data.path=")]
        results = {}
        for name, command in commands.items():
            results[name] = {}
            for when, (tree, _) in trees.items():
                results[name][when] = peak(command, tree)
                print(name, when, results[name][when], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {"what": "peak RSS of fasttune check and of a one-step fasttune run (hf backend), chat rows",
           "rows": {"check": args.check_rows, "run": args.run_rows, "run_shipped_rows": 320},
           "before_commit": trees["before"][1], "commands": {k: [a.replace(str(work), "$TMP") for a in v[1:]]
                                                               for k, v in commands.items()},
           "results": results, "provenance": record()}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"data-memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
