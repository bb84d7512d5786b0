"""Checkpoints in a run folder's checkpoints/, and whether one can continue a new run (`train.resume`).

Every check here reads JSON files alone (the run's config.json, the checkpoint's adapter_config.json and
trainer_state.json), so a resume that cannot work is refused before any model loads.
"""

from __future__ import annotations

import json
from pathlib import Path

from fasttune.errors import ConfigError
from fasttune.run_folder import CONFIG


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
    (before any model loads): another model or task (its run's config.json), LoRA against full
    fine-tuning, another LoRA shape (its adapter_config.json: peft would stop with a size mismatch once
    the model has loaded, or, shapes equal, load weights scaled for another alpha), or no step left to
    train (trainer_state.json: the Trainer would run 0 steps and report the run finished)."""
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
    full = bool(config["model"].get("full_finetune"))
    if adapter.is_file() == full:  # LoRA weights cannot continue a full fine-tuning, nor the other way round
        holds = "LoRA weights" if adapter.is_file() else "every weight"
        found.append(f"model.full_finetune: the checkpoint holds {holds}, this run trains "
                     f"{'every weight' if full else 'LoRA adapters'}")
    elif adapter.is_file():
        saved, lora = json.loads(adapter.read_text()), config["model"]["lora"]
        targets = saved.get("target_modules") or []
        targets = {targets} if isinstance(targets, str) else set(targets)
        embeddings = bool(set(EMBEDDINGS) & (targets | set(saved.get("modules_to_save") or [])))
        for key, was, now in (("r", saved.get("r"), lora["r"]), ("alpha", saved.get("lora_alpha"), lora["alpha"]),
                              ("target_modules", sorted(targets - set(EMBEDDINGS)), sorted(lora["target_modules"])),
                              ("train_embeddings", embeddings, lora["train_embeddings"]),
                              ("use_rslora", bool(saved.get("use_rslora")), lora.get("use_rslora", False)),
                              ("use_dora", bool(saved.get("use_dora")), lora.get("use_dora", False))):
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
