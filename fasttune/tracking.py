"""What a run reports while it trains: a progress bar (or plain lines when output is not a terminal),
metrics.jsonl, loss.png, and Weights & Biases (offline when there is no key or no network).
"""

from __future__ import annotations

import json
import netrc
import os
import shlex
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def plain_console(**options) -> Console:
    """The console fasttune prints through. Text is printed as given, never read as Rich markup or
    emoji codes: most of it is the user's (paths, recipe names, labels, data), and `[/x]` in a path
    would raise a MarkupError, `[red]` vanish. Styled words are `rich.text.Text`; soft_wrap keeps long
    paths whole, copy-pastable."""
    return Console(soft_wrap=True, markup=False, emoji=False, **options)


def make_callback(metrics_path: Path, console: Console, tokens, fields: tuple[str, ...] = ()):
    """A transformers TrainerCallback (built here so transformers is imported only when training).
    `tokens` is the run's throughput.TokenCounter: tokens/s comes from fasttune's own count, summed
    over the processes of a multi-process run, whose rank 0 alone draws the bar and writes the file
    (the loss in the Trainer's logs is already the mean over the processes);
    `fields` are the task's extra log keys for the progress line (Task.progress_fields)."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Progress bar with loss and tokens/s; every log record appended to metrics.jsonl."""

        def __init__(self):
            self.progress = None
            self.last = None  # (time, tokens seen) at the previous log, for tokens/s

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = (time.perf_counter(), tokens.totals()[0])
            if console.is_terminal and state.is_world_process_zero:
                self.progress = Progress(
                    TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                )
                self.task = self.progress.add_task("", total=state.max_steps)
                self.progress.start()

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress:
                self.progress.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            record = {"step": state.global_step, "time": round(time.time(), 3), **logs}
            if "loss" in logs and self.last is not None:  # every process logs the same records, so
                seen, trained = tokens.totals()  # this collective is reached by all of them
                now = time.perf_counter()
                record.update(tokens=seen, trained_tokens=trained, tokens_per_second=round(
                    (seen - self.last[1]) / max(now - self.last[0], 1e-9), 1))
                self.last = (now, seen)
            if not state.is_world_process_zero:
                return
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            if "loss" in logs:
                text = f"loss {logs['loss']:.4f}  {record.get('tokens_per_second', 0):.0f} tok/s"
                text += "".join(f"  {key} {logs[key]:.3f}" for key in fields if key in logs)
                if self.progress:
                    self.progress.update(self.task, description=text)
                else:
                    console.print(f"step {state.global_step}/{state.max_steps}  {text}")
            elif "eval_loss" in logs:
                console.print(f"step {state.global_step}: eval loss {logs['eval_loss']:.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress:
                self.progress.stop()

    return ProgressCallback()


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss(metrics_path: Path, out: Path) -> bool:
    """loss.png: training loss per step, eval loss as points. False when there is nothing to plot."""
    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    if not train:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def wandb_has_key() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_reachable(timeout: float = 2.0) -> bool:
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def setup_wandb(run_dir: Path, run_name: str, project: str) -> str:
    """Point the wandb client (which transformers' WandbCallback drives) at the run folder.

    Returns the mode: 'online', or 'offline' when there is no key or no network (or the user set
    WANDB_MODE). The key itself is never written anywhere by fasttune.
    """
    if os.environ.get("WANDB_MODE") == "":
        del os.environ["WANDB_MODE"]  # wandb rejects an empty mode
    os.environ.setdefault("WANDB_PROJECT", project)
    os.environ["WANDB_DIR"] = str(run_dir)
    os.environ["WANDB_NAME"] = run_name
    os.environ.setdefault("WANDB_SILENT", "true")
    if not os.environ.get("WANDB_MODE") and not (wandb_has_key() and wandb_reachable()):
        os.environ["WANDB_MODE"] = "offline"
    return os.environ.get("WANDB_MODE", "online")


def wandb_sync_commands(run_dir: Path) -> list[str]:
    """The commands that upload the run's offline W&B runs (none when it logged online or not at all),
    each quoted for a shell."""
    return [shlex.join(["wandb", "sync", str(p)]) for p in sorted((run_dir / "wandb").glob("offline-run-*"))]
