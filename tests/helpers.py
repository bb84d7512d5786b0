"""What several test modules share: the repository root, the CLI run in a fresh process or in this one,
and the settings of the trained runs tests/conftest.py provides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """`fasttune ARGS` in a fresh process (Unsloth must be imported before transformers, and a
    pytest process has usually imported transformers already), from the repository root.
    `env` values of None unset that variable."""
    merged = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fasttune.cli", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={k: v for k, v in merged.items() if v is not None},
    )


def first_rows(source: str, count: int, dest: Path) -> Path:
    """`dest` holding the first `count` rows of the data file `source` (relative to the repository): a
    short held-out set, so that a test run's eval loss and metric stay cheap."""
    dest.write_text("".join((ROOT / source).read_text().splitlines(True)[:count]))
    return dest


TRAIN_EACH = """
import json, sys
import fasttune

for label, (recipe, overrides) in json.loads(sys.argv[1]).items():
    print(label, fasttune.train(recipe, *overrides).path, flush=True)
"""


def train_in_one_process(plan: dict[str, tuple[str, list[str]]], timeout: int = 1200) -> dict[str, Path]:
    """Train each {label: (recipe file, overrides)} with `fasttune.train` in one fresh process (the libraries
    import once, Unsloth before transformers), in order; {label: run folder}. Every run must finish."""
    done = subprocess.run([sys.executable, "-c", TRAIN_EACH, json.dumps(plan)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = {label: Path(path) for label, _, path in (line.partition(" ") for line in done.stdout.splitlines())
             if label in plan}
    assert found.keys() == plan.keys(), done.stdout[-3000:]
    return found


CHAT_RUN = ("run", "recipes/chat_sft.py", "model.dtype=float32", "data.eval=0.05", "train.max_steps=8",
            "train.save_steps=2", "train.eval_steps=4", "train.warmup_ratio=0", "eval.samples=2",
            "eval.max_new_tokens=16", "eval.drift_prompts=8")
"""The chat recipe, short: fp32 weights on both backends, so a reloaded adapter answers exactly as the
trained model did (greedy near-ties in bf16 may flip between runs); checkpoints every 2 steps, so the
resume and kill -9 tests can start from them and must end where this run ended. 16 held-out rows (5% of
the training file, not the recipe's 40-row file: each run and resume measures its eval loss up to four
times) and 8 of eval.drift's 50 general prompts (two of each kind)."""
STOP_PROMPTS, STOP_TOKENS = 4, 48
STOPPING = ("train.max_steps=32", "eval.samples=0", "export.formats=[merged,gguf]", "export.quants=[f16]",
            f"export.verify_prompts={STOP_PROMPTS}", f"export.verify_tokens={STOP_TOKENS}")
"""tests/test_stopping.py's chat runs: 32 steps (long enough for Gemma, a base model, to learn to end its
turns: after 16 steps one answer in 8 still ran to the limit), exported; the GGUF's verification answers
STOP_PROMPTS held-out prompts greedily, up to STOP_TOKENS tokens, on the merged model and the GGUF."""
GEMMA = ("model.name=gemma3-270m", "train.max_steps=2", "train.batch_size=2", "export.formats=[]")
"""tests/test_gemma.py's runs: two steps of the shipped Gemma 3 on a recipe's own training file."""
SHIPPED_RUNS = {  # name -> (recipe, held-out rows: the first of its file, overrides)
    "instruct_sft": ("instruct_sft", 2, (*GEMMA, "eval.metric_rows=2", "eval.samples=0", "eval.max_new_tokens=16")),
    "classification": ("classification", 4, (*GEMMA, "eval.samples=0")),
    # one row a step: its rows are 500-700 tokens, the tool schemas included
    "function_calling": ("function_calling", 2, (*GEMMA, "train.batch_size=1", "eval.metric_rows=2",
                                                 "eval.samples=0", "eval.max_new_tokens=12")),
    "dpo": ("dpo", 4, (*GEMMA, "eval.samples=0")),
    # 64-token rows: every token's loss runs through the trained 262k-row head, about 20 ms a token here
    "continued_pretraining": ("continued_pretraining", 2, (*GEMMA, "data.max_seq_length=64", "eval.samples=0")),
    "stopping/smollm2-135m-instruct": ("chat_sft", STOP_PROMPTS, ("model.name=smollm2-135m-instruct", *STOPPING)),
    "stopping/gemma3-270m": ("chat_sft", STOP_PROMPTS, ("model.name=gemma3-270m", *STOPPING)),
}
"""The runs of both shipped models that tests/test_gemma.py and test_stopping.py read, trained in one fresh
process (tests/conftest.py's `shipped_runs`: the libraries import once), W&B and drift off."""
FAKE_KEY = "fasttune-test-key-0123456789abcdef0123"
WANDB_UNREACHABLE = {"WANDB_API_KEY": FAKE_KEY, "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_MODE": None}
"""A W&B key with no reachable server: the run must go offline and never write the key down."""


@dataclass
class TrainedRun:
    path: Path
    """The run folder."""
    output: str
    """What the command printed (stdout, then stderr)."""
    args: tuple[str, ...]
    """The command's arguments (after `fasttune`), log.runs_dir and backend included."""


def train_run(runs: Path, *args: str, env: dict | None = None) -> TrainedRun:
    """`fasttune ARGS log.runs_dir=RUNS` in a fresh process; it must finish and leave one run folder."""
    args = (*args, f"log.runs_dir={runs}")
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [path] = list(runs.iterdir())
    return TrainedRun(path, result.stdout + result.stderr, args)


def invoke(*args: str) -> subprocess.CompletedProcess:
    """`fasttune ARGS` in this process (click's CliRunner), for commands that train nothing (chat, export,
    check, refusals): no interpreter start and library import per call. Training keeps `run_cli`."""
    from click.testing import CliRunner

    from fasttune.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


@dataclass
class NotebookCI:
    """How CI runs one recipe's notebook: a few steps with the settings the task's own tests need, since
    they read the run this notebook trains (tests/conftest.py's `notebook_run`)."""

    steps: int
    """MAX_STEPS."""
    quant: str
    """EXPORT_QUANT: the GGUF type its export cell writes."""
    extra: tuple[str, ...]
    """EXTRA overrides, after the notebook's own."""
    eval_rows: int | None = None
    """Held-out rows: the first N of the recipe's eval file (its eval loss costs a forward pass over each)."""
    drift: bool = True
    """eval.drift on DRIFT_PROMPTS general prompts; off where the run adds no case to the drift tests (an SFT
    task like chat_sft's, whose notebook measures it)."""
    export: bool = True
    """Run the cells tagged `export` (export, then chat with the GGUF). Where no test reads the export,
    CI skips them: the export code is the same for every task, and chat_sft's, function_calling's,
    reasoning_sft's and classification's notebooks run it (tests/test_export.py checks it in depth)."""


GSPO = ("task.loss_type=grpo", "task.importance_sampling_level=sequence", "task.scale_rewards=none",
        "task.epsilon_high=0.28")
"""grpo_math's notebook trains GSPO with Dr. GRPO's unscaled rewards: a loss variant other than TRL's default,
which tests/test_variants.py reads back from the trainer (the default runs in benchmarks/variants.py)."""
FP32 = "model.dtype=float32"  # where a test compares greedy answers token for token (bf16 near-ties flip)
NOTEBOOK_CI = {
    "chat_sft": NotebookCI(2, "q4_k_m", ("eval.metric_rows=8", "eval.samples=2"), 8),
    "classification": NotebookCI(6, "f16", ("model.backend=hf", FP32, "eval.samples=2"), 16, drift=False),
    "continued_pretraining": NotebookCI(4, "f16", ("eval.samples=1", "eval.max_new_tokens=8"), 8, drift=False,
                                        export=False),
    "dpo": NotebookCI(4, "f16", (FP32, "train.batch_size=2", "train.lr=2e-4"), 8, export=False),
    "kto": NotebookCI(4, "f16", (FP32, "train.batch_size=4", "train.lr=5e-4", "task.beta=0.2",
                                 "task.desirable_weight=1.2", "eval.samples=2"), 8, drift=False, export=False),
    "function_calling": NotebookCI(3, "f16", ("train.batch_size=2", "eval.metric_rows=4", "eval.samples=4",
                                              "eval.max_new_tokens=40"), 4, drift=False),
    # completions of the recipe's 64 tokens (~250 characters) run past length_penalty(200) by differing
    # amounts, so each group's rewards differ and a step moves the weights whatever the model answers
    "grpo_math": NotebookCI(2, "f16", ("eval.metric_rows=4", "eval.samples=4", "eval.max_new_tokens=24",
                                       "train.lr=1e-4", *GSPO), 8, export=False),
    "instruct_sft": NotebookCI(4, "f16", ("eval.metric_rows=6", "eval.samples=6", "eval.max_new_tokens=32"), 8,
                               drift=False, export=False),
    "reasoning_sft": NotebookCI(4, "f16", (FP32, "eval.metric_rows=4", "eval.samples=4", "eval.max_new_tokens=48"), 8),
}
"""The other runs train in the backend's own dtype: bf16 on a CPU with AVX512-BF16 (Unsloth's CPU path,
with fasttune's fused LoRA steps), fp32 elsewhere."""


DRIFT_PROMPTS = 4
"""eval.drift on 4 general prompts (one of each kind) in the notebook runs that measure it: chat_sft's
(Unsloth, bf16), dpo's (a second, reference adapter beside the trained one), grpo_math's and
reasoning_sft's (a template with a thinking switch); the others set eval.drift=false (NotebookCI.drift)."""


@dataclass
class NotebookRun:
    path: Path
    """The run folder the notebook trained."""
    outputs: str
    """Every code cell's text and data outputs, joined."""


def notebook_kernel():
    """One Jupyter kernel for a test worker's notebooks, started in the repository root with W&B offline (no
    network, no key here). A kernel per notebook paid its start and `import fasttune` nine times; here the
    notebooks run one after another, as a user runs them in one Colab session, each defining every name
    it reads (its parameters cell, its recipe)."""
    from jupyter_client import KernelManager

    kernel = KernelManager(kernel_name="python3")
    kernel.start_kernel(cwd=str(ROOT), env={**os.environ, "WANDB_MODE": "offline"})
    return kernel


def execute_notebook(name: str, runs: Path, kernel) -> NotebookRun:
    """colab/NAME.ipynb run top to bottom on CPU as NOTEBOOK_CI says, in `kernel` (notebook_kernel), its
    Colab install cell skipped, its runs in `runs`."""
    import nbformat
    from nbclient import NotebookClient

    ci = NOTEBOOK_CI[name]
    nb = nbformat.read(ROOT / "colab" / f"{name}.ipynb", as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    drift = f"eval.drift_prompts={DRIFT_PROMPTS}" if ci.drift else "eval.drift=false"
    extra = [*ci.extra, drift, f"log.runs_dir={runs}"]
    if ci.eval_rows:
        from fasttune.recipe import load_recipe

        held_out = first_rows(load_recipe(ROOT / "recipes" / f"{name}.py").data.eval, ci.eval_rows,
                              runs.with_name(f"{runs.name}-eval.jsonl"))
        extra.append(f"data.eval={held_out}")
    parameters = f"MAX_STEPS = {ci.steps}\nEXPORT_QUANT = {ci.quant!r}\nEXTRA = {extra!r}"
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(parameters))
    skipped = {"colab-install"} if ci.export else {"colab-install", "export"}
    nb.cells = [c for c in nb.cells if not skipped & set(c.metadata.get("tags", []))]
    NotebookClient(nb, km=kernel, timeout=1200).execute()  # a kernel it does not own: left running
    [path] = list(runs.iterdir())  # the notebook trained exactly one run, where CI said
    outputs = "\n".join(o.get("text", "") + "\n" + json.dumps(o.get("data", {})) for c in nb.cells
                        if c.cell_type == "code" for o in c.outputs)
    return NotebookRun(path, outputs)


PEAK = ("import re\n"
        "def peak():  # KiB; VmHWM is this process's own high-water mark (ru_maxrss keeps the forking parent's)\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n")


def merge_peak(base, adapter, out) -> tuple[int, int]:
    """Merge in a process of its own: (peak RSS after its imports, peak RSS at the end), in bytes."""
    code = (PEAK + "from pathlib import Path\nfrom fasttune.export.merged import merge_folders\n"
            "import peft, safetensors, torch, transformers\n"
            "before = peak()\n"
            f"merge_folders(Path({str(base)!r}), Path({str(adapter)!r}), Path({str(out)!r}))\n"
            "print(before, peak())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = done.stdout.split()[-2:]
    return int(before) * 1024, int(after) * 1024
