"""The benchmarks' arithmetic, plans and data, checked without running them (the GPU one needs CUDA)."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu  # noqa: E402  (benchmarks/ is scripts, not a package)


def test_steady_rate_leaves_out_the_warmup_steps():
    # step 1 and 2 take 10 s each (compilation), then 1 s per step of 1000 tokens
    records, clock = [], 0.0
    for step in range(1, 7):
        clock += 10.0 if step <= 2 else 1.0
        records.append({"step": step, "tokens": 1000 * step, "time": clock})
    assert gpu.steady_rate(records) == 1000.0
    overall = records[-1]["tokens"] / records[-1]["time"]
    assert overall < 300  # what the whole-loop figure would say
    assert gpu.steady_rate(records[:3]) is None  # nothing left after the warm-up


def test_dry_run_plans_one_process_per_run_with_the_shared_settings():
    out = subprocess.run([sys.executable, "benchmarks/gpu.py", "--dry-run", "--shapes", "8b",
                          "--recipes", "continued_pretraining", "--lengths", "2048x2,16384x1", "train.packing=off"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    runs = [line for line in out if "fasttune.cli run" in line]
    assert len(runs) == 4  # 2 lengths x 2 backends
    assert sum("model.backend=unsloth" in r for r in runs) == 2
    assert all("train.gradient_checkpointing=true" in r and r.endswith("train.packing=off") for r in runs)
    long = [r for r in runs if "data.max_seq_length=16384" in r]
    assert all("train.max_steps=2" in r and "train.batch_size=1" in r for r in long)
    # frozen embeddings come after embedding_lr=0, the order the recipe's check accepts
    assert all(r.index("train.embedding_lr=0") < r.index("model.lora.train_embeddings=false") for r in runs)


def test_every_result_file_records_the_commit_the_packages_and_the_machine():
    import importlib.metadata

    import provenance

    source = provenance.record(gpu={"name": "NVIDIA H200", "memory_gib": 139.8, "emulated_gib": 16})
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert source["fasttune_commit"]["sha"] == head and isinstance(source["fasttune_commit"]["dirty"], bool)
    assert source["versions"]["torch"] == importlib.metadata.version("torch")
    assert source["versions"]["xformers"] is None  # not installed here: recorded as absent, not left out
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    assert source["cpu"]["avx512_bf16"] == ("avx512_bf16" in flags.split())
    assert source["cpu"]["model"] and source["gpu"]["emulated_gib"] == 16


def test_the_data_memory_benchmark_writes_distinct_valid_chat_rows(tmp_path):
    import data_memory

    from fasttune.data.load import load_rows
    from fasttune.tasks import ChatSFT

    rows = load_rows(str(data_memory.write_rows(tmp_path / "chat.jsonl", 700)), check_row=ChatSFT().check_row)
    assert len(rows) == 700 and len({json.dumps(r.data) for r in rows}) == 700  # more rows than the recipe has
