"""The model and datasets of one recipe, loaded: what `fasttune run` trains and `fasttune eval` measures.

Both build them here, the same way, so an evaluation redone from a run folder sees the model, chat
template, tokenized data and truncation that the training saw; `fasttune eval` then puts the run's
saved adapter weights on the fresh LoRA layers (a fully fine-tuned run's weights on the whole model), as a
resume does with a checkpoint's.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from fasttune import models
from fasttune.backends.quantization import use_4bit
from fasttune.errors import ConfigError, DataError, Problem


@dataclass
class Session:
    """A loaded model with its LoRA layers (none when fully fine-tuned), its tokenizer, and the recipe's
    datasets tokenized for it."""

    recipe: object
    backend: object
    model: object
    tokenizer: object
    train_ds: object
    eval_ds: object
    stats: dict
    """{"train": PrepStats, "eval": PrepStats}: what tokenizing kept, cut and dropped."""
    template: object
    """The chat template's TemplateChoice: its name (what config.json records) and why."""

    @property
    def has_eval(self) -> bool:
        """True when the task has a held-out loss and there are held-out rows to compute it on."""
        return self.recipe.task.has_eval_loss and self.eval_ds is not None and len(self.eval_ds) > 0

    def trainer(self, hooks):
        """The task's TRL trainer over the datasets (`Task.trainer`), with the run's `hooks` (RunHooks)."""
        return self.recipe.task.trainer(self.recipe, self.model, self.tokenizer, self.train_ds, self.eval_ds, hooks)


def open_session(recipe, backend, train_rows: list, eval_rows: list, say, weights: Path | None = None) -> Session:
    """Load the base model with fresh LoRA layers (`weights`: a saved adapter, model or checkpoint folder
    whose weights it then takes, `load_trained_weights`), set the task's chat template, tokenize both splits
    and say what the data became. A DataError when no training row survives truncation."""
    task, data, train = recipe.task, recipe.data, recipe.train
    path = models.resolve(recipe.model.name, say)
    if recipe.model.load_in_4bit and not use_4bit(recipe.model):
        say("model.load_in_4bit applies on CUDA only: loading the base unquantized on this machine")
    try:
        model, tokenizer = backend.load(recipe.model, path, data.max_seq_length, train.gradient_checkpointing,
                                        train.seed)
    except OSError as error:  # what from_pretrained raises for a missing or unreachable model
        raise ConfigError(models.load_failure(recipe.model.name, error)) from error
    template = task.setup_tokenizer(tokenizer, recipe.model.chat_template)
    say(f"Model: {recipe.model.name} ({path}), chat template: {template}; trains {recipe.model.trains()}")

    train_ds, eval_ds, stats = task.datasets(train_rows, eval_rows, tokenizer, data.max_seq_length)
    from fasttune.check import summary_line

    for split, fig in ((split, stats[split].figures.report(data.max_seq_length)) for split in ("train", "eval")):
        say(summary_line(split, fig))  # the first lines of `fasttune check`, from the rows tokenized once
        if stats[split].dropped:
            say(f"  {stats[split].dropped} {split} rows dropped: nothing left to train on within the length limits")
    if stats["train"].rows == 0:
        raise DataError([Problem(data.path, "", "no row left to train on after truncation; raise data.max_seq_length")])
    if weights:
        load_trained_weights(model, weights)
    return Session(recipe, backend, model, tokenizer, train_ds, eval_ds, stats, template)


def load_trained_weights(model, folder: Path) -> None:
    """Put the weights saved in `folder` on the model: an adapter/ or LoRA checkpoint's on its LoRA layers,
    a fully fine-tuned model/ or checkpoint's (model*.safetensors, one file or shards) on every weight."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
        return
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise ConfigError(f"{folder}: neither adapter_model.safetensors nor model*.safetensors, so no trained "
                          "weights to load")
    for file in files:  # a tied lm_head is not saved: strict=False, and only foreign names refused
        unexpected = model.load_state_dict(load_file(file), strict=False).unexpected_keys
        if unexpected:
            raise ConfigError(f"{file}: {unexpected[0]} and {len(unexpected) - 1} more are not weights of this model")


def quiet_libraries() -> None:
    """Drop library chatter that says nothing to a user: deprecation FutureWarnings raised inside
    transformers/Unsloth, and datasets' bars for sub-second steps fasttune summarises itself."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
