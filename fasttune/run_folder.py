"""The run folder `runs/<recipe>-<timestamp>/`: the contract between training and everything after it.

Training writes it (`RunFolder`): config.json, status.json, eval_prompts.json, adapter/ (model/ when
fully fine-tuned), eval.json, samples.md, metrics.jsonl. status.json is written 'running' first and
'finished' last, so a crash or Ctrl-C never leaves a folder that claims success; files go under a
temporary name and are renamed.

Predict, chat and export read it (`open_run` -> `FinishedRun`) and nothing else: they never import
run.py or rebuild the recipe. A finished run has its config, its trained weights (`trained_folder`,
with the tokenizer and chat template it trained with) and its held-out prompts, rendered as the model saw them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

from fasttune.errors import ConfigError, RunInterrupted

CONFIG, STATUS, EVAL_PROMPTS = "config.json", "status.json", "eval_prompts.json"
ADAPTER, FULL_WEIGHTS = "adapter", "model"  # the trained weights of a LoRA run, of a fully fine-tuned one


def trained_folder(full_finetune: bool) -> str:
    """The run folder's folder of trained weights: the LoRA adapter, or with model.full_finetune the whole
    model (safetensors and config in the HF layout)."""
    return FULL_WEIGHTS if full_finetune else ADAPTER


def temporary_name(target: Path, kind: str = "tmp") -> Path:
    """A hidden name beside `target` that no other process or call uses (pid and a random part): two
    writers of the same file, e.g. two exports, never delete or rename each other's half-written copy."""
    return target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.{kind}")


def write_text(path: Path, text: str) -> None:
    """`text` as `path`, written under a temporary name and renamed: a reader never sees half a file."""
    tmp = temporary_name(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, value) -> None:
    """`value` as strict JSON (`finite_json`), written whole (`write_text`)."""
    write_text(path, json.dumps(finite_json(value), indent=2, default=str, allow_nan=False) + "\n")


def finite_json(value):
    """`value` with every float that is not finite as the string "NaN", "Infinity" or "-Infinity": JSON
    has no NaN, and a bare NaN (Python's default) breaks every reader but Python's. A diverging run's
    loss is one."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {key: finite_json(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def write_dir(target: Path, build) -> None:
    """`build(tmp)` fills a temporary folder beside `target`, which then replaces `target`: an error
    or a full disk midway leaves no half-written folder under the real name."""
    tmp = temporary_name(target)
    try:
        build(tmp)
        replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace(new: Path, target: Path) -> None:
    """`new` takes `target`'s name. The old copy is renamed aside first and deleted last, and renamed
    back when `new` cannot take its place: at every moment a complete copy exists (deleting first, an
    interrupt before the rename would leave neither)."""
    old = temporary_name(target, "old") if target.exists() or target.is_symlink() else None
    if old:
        target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        if old:
            old.rename(target)
        raise
    if old:
        _remove(old)


def _remove(path: Path) -> None:
    """A folder with what it holds, or a file."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def check_name(name: str) -> None:
    """A run's name (the recipe's `name`) becomes one folder inside log.runs_dir, `<name>-<timestamp>`:
    a path separator in it (`../x`, `/tmp/x`) would put the run folder, and everything the run writes,
    somewhere else. Refused before anything is written."""
    if any(sep in name for sep in ("/", "\\", "\0")):
        raise ConfigError(f"name: {name!r} is not a plain name: the run folder is made inside log.runs_dir, so a "
                          "name has no '/' or '\\' (no '..', no absolute path); log.runs_dir says where runs go")


class RunFolder:
    def __init__(self, path: Path, writes: bool = True):
        self.path = path
        self.name = path.name
        self.writes = writes  # False on the ranks other than 0 of a multi-process run

    @staticmethod
    def check_writable(runs_dir: str) -> None:
        """Refuse a runs folder that cannot be written, before any model loads."""
        try:
            Path(runs_dir).mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=runs_dir).close()
        except OSError as error:
            raise ConfigError(f"log.runs_dir: cannot write run folders in {runs_dir} "
                              f"({error.strerror or error}); set log.runs_dir to a writable folder") from None

    @classmethod
    def create(cls, runs_dir: str, prefix: str) -> RunFolder:
        """A new folder; with several processes rank 0 creates it, every rank gets its path, and only
        rank 0's status() writes (the others still write their RNG state into its checkpoints)."""
        from fasttune import distributed

        main = distributed.is_main()
        return cls(Path(distributed.share(str(cls._new(runs_dir, prefix)) if main else None)), writes=main)

    @classmethod
    def _new(cls, runs_dir: str, prefix: str) -> Path:
        check_name(prefix)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        root = Path(runs_dir)
        cls.check_writable(runs_dir)
        for n in range(100):
            path = root / (f"{prefix}-{stamp}" + (f"-{n}" if n else ""))
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
        raise FileExistsError(f"could not create a new run folder under {root}")

    def status(self, state: str, **extra) -> None:
        if self.writes:
            write_json(self.path / STATUS, {"status": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                            **extra})

    def step(self, name: str, state: str, error: BaseException | None = None, **extra) -> None:
        """Record how a step after training went: status.json's `name` ('evaluation', 'export') becomes
        `state`, with the error's message and traceback when there is one, and `extra` keys (what the
        step found); the rest is kept."""
        if self.writes:
            record_step(self.path, name, state, error, **extra)

    def fail(self, error: BaseException, **extra) -> None:
        """status.json says the run failed or was interrupted, and why; never raises in `error`'s place
        (`write_ending`)."""
        if self.writes:
            state = "interrupted" if isinstance(error, KeyboardInterrupt | RunInterrupted) else "failed"
            write_ending(self.path / STATUS, {"status": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                              "error": f"{type(error).__name__}: {error}",
                                              "traceback": "".join(traceback.format_exception(error))[-4000:],
                                              **extra}, error)


def write_ending(path: Path, status: dict, error: BaseException) -> None:
    """status.json saying how the run or a step ended, written while `error` is on its way up, so it never
    raises in its place. The disk that broke the run is often full, with no room for write_json's new
    copy: status.json is then rewritten in place (the blocks it holds are reused) without the
    traceback; when even that fails, a warning on stderr says it may still read 'running'."""
    try:
        write_json(path, status)
    except OSError as cannot:
        short = {k: v[:1000] if isinstance(v, str) else v for k, v in status.items() if not k.endswith("traceback")}
        try:
            with open(path, "r+b") as f:  # not atomic, but the only write left; status.json is small
                f.write((json.dumps(short, indent=2) + "\n").encode())
                f.truncate()
        except OSError:
            print(f"Warning: {path} could not be updated ({cannot.strerror or cannot}), so it does not record "
                  f"{type(error).__name__}: {error}", file=sys.stderr)


def record_step(run_dir: Path, name: str, state: str, error: BaseException | None = None, **extra) -> None:
    """status.json of a finished run with step `name` set to `state` ('running', 'done', 'failed',
    'interrupted') and `extra` keys; `name`_error and `name`_traceback say why when `error` is given."""
    status = {k: v for k, v in read_status(run_dir).items() if not k.startswith(f"{name}_")}
    status.update({name: state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra})
    if error is None:
        write_json(Path(run_dir) / STATUS, status)
        return
    status[f"{name}_error"] = f"{type(error).__name__}: {error}"
    status[f"{name}_traceback"] = "".join(traceback.format_exception(error))[-4000:]
    write_ending(Path(run_dir) / STATUS, status, error)


class FinishedRun:
    """A run folder whose training finished: its config, task, held-out prompts, and trained model."""

    def __init__(self, path: Path, config: dict, status: dict):
        self.path, self.config, self.status = path, config, status
        self.full_finetune = bool(config["model"].get("full_finetune"))  # absent from older config.json
        self.weights = path / trained_folder(self.full_finetune)
        """adapter/ (LoRA weights) or model/ (every weight): each with the tokenizer and chat template."""
        self.model_name: str = config["model"]["name"]
        self.task_type: str = config["task"]["type"]

    def task_class(self):
        """The task's class (its declared properties; GRPO's rewards are not rebuilt from config.json)."""
        from fasttune.tasks import task_class

        return task_class(self.task_type)

    def held_out(self) -> list[dict] | None:
        """[{prompt, text, reference}] from eval_prompts.json; None for a run written before it existed."""
        file = self.path / EVAL_PROMPTS
        return json.loads(file.read_text()) if file.is_file() else None

    def base_path(self, say=print) -> str:
        """The base model's local path (the embedded GGUF converted, or the hub/local model)."""
        from fasttune import models

        return models.resolve(self.model_name, say)

    def load_model(self, dtype=None, say=print):
        """(the trained model in eval mode: base + adapter as a peft model, or the fully fine-tuned weights;
        the run's tokenizer), via plain transformers + peft: inference needs none of Unsloth's training
        patches, and starts faster."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.weights)  # carries the chat template trained with
        if self.full_finetune:
            model = AutoModelForCausalLM.from_pretrained(self.weights, dtype=dtype or torch.float32).eval()
            model.config.use_cache = True  # saved as training had it: off
            return model, tokenizer
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(self.base_path(say), dtype=dtype or torch.float32)
        return PeftModel.from_pretrained(base, self.weights).eval(), tokenizer


def is_run_folder(path: Path) -> bool:
    return (path / CONFIG).is_file() and any((path / name).is_dir() for name in (ADAPTER, FULL_WEIGHTS))


def run_folder(path: Path) -> Path:
    """`path` as a Path, once it is a run folder (holds config.json): a ConfigError saying so when not."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise ConfigError(f"{path}: not a run folder (no {CONFIG})")
    return path


def read_json(run_dir: Path, name: str):
    """A JSON file of the run folder; a ConfigError naming the run's status when it is missing (the run
    has not written it, or not yet)."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise ConfigError(f"{path}: missing (status: {read_status(run_dir)['status']})")
    return json.loads(path.read_text())


def read_status(path: Path) -> dict:
    """status.json of a run folder ({"status": "unknown"} when it has none)."""
    status = Path(path) / STATUS
    return json.loads(status.read_text()) if status.is_file() else {"status": "unknown"}


def open_run(path: Path) -> FinishedRun:
    """The finished run at `path`; a ConfigError saying what is missing or why it did not finish."""
    path = run_folder(path)
    status = read_status(path)
    if status.get("status") != "finished":
        raise ConfigError(f"{path}: the run did not finish (status: {status.get('status')}), "
                          "so it has no final trained weights")
    run = FinishedRun(path, read_json(path, CONFIG), status)
    if not run.weights.is_dir():
        raise ConfigError(f"{path}: finished, but its {run.weights.name}/ folder is missing")
    return run
