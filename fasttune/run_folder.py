"""The run folder `runs/<recipe>-<timestamp>/`: the contract between training and everything after it.

Training writes it (`RunFolder`): config.json, status.json, eval_prompts.json, adapter/, eval.json,
samples.md, metrics.jsonl. status.json is written 'running' first and 'finished' last, so a crash
or Ctrl-C never leaves a folder that claims success; files go under a temporary name and are renamed.

Predict, chat and export read it (`open_run` -> `FinishedRun`) and nothing else: they never import
run.py or rebuild the recipe. A finished run has its config, its trained adapter (with the
tokenizer and chat template it trained with) and its held-out prompts, rendered as the model saw them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path

from fasttune.errors import ConfigError, RunInterrupted

CONFIG, STATUS, ADAPTER, EVAL_PROMPTS = "config.json", "status.json", "adapter", "eval_prompts.json"


def write_json(path: Path, value) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def write_dir(target: Path, build) -> None:
    """`build(tmp)` fills a temporary folder beside `target`, which then replaces `target`: an error
    or a full disk midway leaves no half-written folder under the real name."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
        state = "interrupted" if isinstance(error, KeyboardInterrupt | RunInterrupted) else "failed"
        self.status(state, error=f"{type(error).__name__}: {error}",
                    traceback="".join(traceback.format_exception(error))[-4000:], **extra)


def record_step(run_dir: Path, name: str, state: str, error: BaseException | None = None, **extra) -> None:
    """status.json of a finished run with step `name` set to `state` ('running', 'done', 'failed',
    'interrupted') and `extra` keys; `name`_error and `name`_traceback say why when `error` is given."""
    status = {k: v for k, v in read_status(run_dir).items() if not k.startswith(f"{name}_")}
    status.update({name: state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra})
    if error is not None:
        status[f"{name}_error"] = f"{type(error).__name__}: {error}"
        status[f"{name}_traceback"] = "".join(traceback.format_exception(error))[-4000:]
    write_json(Path(run_dir) / STATUS, status)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint in a run folder's checkpoints/ (None when there is none)."""
    found = [p for p in (Path(run_dir) / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(found, key=lambda p: int(p.name.rsplit("-", 1)[1]), default=None)


def find_checkpoint(path: str, config: dict | None = None) -> Path:
    """The checkpoint to resume from: `path` itself, or the newest one in a run folder's checkpoints/.
    With `config` (the new run's Recipe.to_dict()), one that cannot continue that run is refused."""
    folder = Path(path)
    found = folder if (folder / "trainer_state.json").is_file() else latest_checkpoint(folder)
    if found is None:
        raise ConfigError(f"train.resume: {path} is neither a checkpoint folder nor a run folder with checkpoints "
                          "(set train.save_steps to write them)")
    if config is not None:
        differences = resume_differences(found, config)
        if differences:
            raise ConfigError(f"train.resume: {found} cannot continue this run:\n  " + "\n  ".join(differences)
                              + "\nResume with the recipe and overrides that wrote it, or start afresh without "
                              "train.resume.")
    return found


def resume_differences(checkpoint: Path, config: dict) -> list[str]:
    """What keeps `checkpoint` from continuing the run `config` describes, read from JSON files alone
    (before any model loads): another model or task (its run's config.json), another LoRA shape (its
    adapter_config.json: peft would stop with a size mismatch once the model has loaded, or, shapes
    equal, load weights scaled for another alpha), or no step left to train (trainer_state.json: the
    Trainer would run 0 steps and report the run finished)."""
    from fasttune.config import EMBEDDINGS

    found = []
    run = checkpoint.parent.parent / CONFIG
    if checkpoint.parent.name == "checkpoints" and run.is_file():
        theirs = json.loads(run.read_text())
        if not same_model(theirs["model"]["name"], config["model"]["name"]):
            found.append(f"model: the checkpoint trained {theirs['model']['name']}, this run trains "
                         f"{config['model']['name']}")
        if theirs["task"]["type"] != config["task"]["type"]:
            found.append(f"task: the checkpoint trained {theirs['task']['type']}, this run {config['task']['type']}")
    adapter = checkpoint / "adapter_config.json"
    if adapter.is_file():
        saved, lora = json.loads(adapter.read_text()), config["model"]["lora"]
        targets = saved.get("target_modules") or []
        targets = {targets} if isinstance(targets, str) else set(targets)
        embeddings = bool(set(EMBEDDINGS) & (targets | set(saved.get("modules_to_save") or [])))
        for key, was, now in (("r", saved.get("r"), lora["r"]), ("alpha", saved.get("lora_alpha"), lora["alpha"]),
                              ("target_modules", sorted(targets - set(EMBEDDINGS)), sorted(lora["target_modules"])),
                              ("train_embeddings", embeddings, lora["train_embeddings"])):
            if was != now:
                found.append(f"model.lora.{key}: the checkpoint has {was}, this run {now}")
    state, train = json.loads((checkpoint / "trainer_state.json").read_text()), config["train"]
    step, epoch = state.get("global_step", 0), state.get("epoch") or 0.0
    if 0 < train["max_steps"] <= step:
        found.append(f"train.max_steps: the checkpoint is at step {step}, so max_steps={train['max_steps']} leaves "
                     f"nothing to train; raise it above {step}")
    elif train["max_steps"] == -1 and epoch >= train["epochs"] - 1e-9:
        found.append(f"train.epochs: the checkpoint has trained {epoch:g} epochs, so epochs={train['epochs']:g} "
                     "leaves nothing to train; raise it")
    return found


def same_model(a: str, b: str) -> bool:
    """Whether two model.name values name one model: equal, or paths to one folder or file."""
    if a == b:
        return True
    first, second = Path(a).expanduser(), Path(b).expanduser()
    return first.exists() and second.exists() and first.resolve() == second.resolve()


class FinishedRun:
    """A run folder whose training finished: its config, task, held-out prompts, and trained model."""

    def __init__(self, path: Path, config: dict, status: dict):
        self.path, self.config, self.status = path, config, status
        self.adapter = path / ADAPTER
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
        """(base + trained adapter as a peft model in eval mode, the run's tokenizer), via plain
        transformers + peft: inference needs none of Unsloth's training patches, and starts faster."""
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base = AutoModelForCausalLM.from_pretrained(self.base_path(say), dtype=dtype or torch.float32)
        model = PeftModel.from_pretrained(base, self.adapter).eval()
        return model, AutoTokenizer.from_pretrained(self.adapter)  # carries the chat template trained with


def is_run_folder(path: Path) -> bool:
    return (path / CONFIG).is_file() and (path / ADAPTER).is_dir()


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
                          "so it has no final adapter")
    if not (path / ADAPTER).is_dir():
        raise ConfigError(f"{path}: finished, but its {ADAPTER}/ folder is missing")
    return FinishedRun(path, read_json(path, CONFIG), status)
