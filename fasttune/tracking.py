"""What a run reports while it trains: a progress bar (or plain lines when output is not a terminal),
metrics.jsonl, loss.png, and Weights & Biases (offline when there is no key or no network).

metrics.jsonl is read while it is written (`fasttune.Run(...).metrics` in a notebook, the loss plot
after a crash), so each record is appended as one complete line in one write, a last line without
its newline is left out by the reader, and a number that is not finite (a diverging loss) is written
as the string "NaN", "Infinity" or "-Infinity": JSON has no NaN, and a bare NaN breaks every reader
but Python's. `read_metrics` gives them back as floats.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import netrc
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fasttune.errors import StorageError
from fasttune.run_folder import finite_json

NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


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
            append_metrics(metrics_path, record)
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


def append_metrics(path: Path, record: dict) -> None:
    """`record` as one line at the end of metrics.jsonl, in a single write. A write that fails (a full
    disk) is cut back off, so the file never holds half a record, and ends the run as a StorageError."""
    line = (json.dumps(finite_json(record), allow_nan=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
            if os.write(fd, line) < len(line):  # a short write: the disk filled up during it
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
            resume = shlex.quote(f"train.resume={path.parent}")
            raise StorageError(f"{path}: could not append the step {record.get('step')} record "
                               f"({error.strerror or error}). The run stops here, marked failed; once the disk has "
                               f"room, run it again, or resume from its newest checkpoint (if it saved one) with "
                               f"{resume}") from error
    finally:
        os.close(fd)


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl's records, NaN and infinities as floats again. A last line without its newline is a
    record being written, or cut off by a crash: it is left out."""
    if not path.is_file():
        return []
    complete = path.read_text().split("\n")[:-1]
    return [json.loads(line, object_hook=_numbers) for line in complete if line.strip()]


def _numbers(record: dict) -> dict:
    return {key: NONFINITE.get(v, v) if isinstance(v, str) else v for key, v in record.items()}


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


@contextlib.contextmanager
def one_wandb_run():
    """End the process's W&B run when the block ends, however it ends, and let the next one read its
    settings afresh. transformers' WandbCallback opens a run when none is open and never closes it, and
    wandb reads WANDB_DIR once per process, so a second training in the same process (a notebook's
    kernel, `fasttune.train` twice) logged into the first one's W&B run and folder, and its own run
    folder had no W&B log at all."""
    try:
        yield
    finally:
        wandb = sys.modules.get("wandb")  # imported only where a run reports to W&B
        if wandb is not None and getattr(wandb, "run", None) is not None:
            wandb.finish()
            wandb.teardown()  # the next wandb.init reads WANDB_DIR (setup_wandb's run folder) again


def wandb_sync_commands(run_dir: Path) -> list[str]:
    """The commands that upload the run's offline W&B runs (none when it logged online or not at all),
    each quoted for a shell."""
    return [shlex.join(["wandb", "sync", str(p)]) for p in sorted((run_dir / "wandb").glob("offline-run-*"))]
