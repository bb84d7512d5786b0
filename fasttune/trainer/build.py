"""The trainer a task builds: TRL's class (as Unsloth patched it, when it did) with fasttune's step.

Every task builds its trainer through `build`, which makes a subclass of the TRL trainer class it
names, once per class. The subclass adds exactly two things, as methods rather than patches on an
instance:
- training_step and prediction_step run inside the contexts of the step tricks that apply to it
  (fasttune/trainer/tricks.py);
- compute_loss counts every training micro-batch's tokens (fasttune/trainer/throughput.py), the
  same way on every backend.
Everything else is the class's own; super() reaches whatever Unsloth installed on it. The class is
built with its dataset maps unhashed (`unhashed_maps`).

The SFT tasks share `build_sft_trainer`; GRPO and DPO build theirs in their task modules.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from fasttune.trainer.arguments import common_args, embedding_optimizer, eval_args, packing_mode
from fasttune.trainer.tricks import applicable


@dataclass
class RunHooks:
    """What the run gives every trainer a task builds."""

    run_dir: Path
    """Where checkpoints go (run_dir/checkpoints)."""
    run_name: str
    """The run's name, for trackers."""
    callbacks: list = field(default_factory=list)
    """TrainerCallbacks: the progress bar and metrics.jsonl, the stop guard."""
    tokens: object = None
    """A throughput.TokenCounter that counts every training micro-batch; None: nothing counted."""


@cache
def fasttune_class(base: type) -> type:
    """`base` (a transformers Trainer class) with fasttune's training step."""

    class FasttuneTrainer(base):
        def __init__(self, *args, token_counter=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.token_counter = token_counter
            from transformers import PrinterCallback
            from trl import SFTTrainer

            self.step_tricks = applicable(self)
            self.remove_callback(PrinterCallback)  # it prints raw log dicts; fasttune's callback shows them
            # TRL's SFT loss runs a fused LM head that never builds the logits, and a caller that asks for the
            # outputs (as the Trainer's evaluation does, even when it keeps only the loss) gets them from a
            # second, full forward pass: so evaluation that keeps only the loss asks for the loss alone
            self.loss_only_evaluation = isinstance(self, SFTTrainer)

        def step_contexts(self) -> ExitStack:
            stack = ExitStack()
            for trick in self.step_tricks:
                stack.enter_context(trick.context(self))
            return stack

        def training_step(self, *args, **kwargs):
            with self.step_contexts():
                return super().training_step(*args, **kwargs)

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            with self.step_contexts():
                if not (prediction_loss_only and self.loss_only_evaluation):
                    return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
                import torch

                inputs = self._prepare_inputs(inputs)
                count = self._get_num_items_in_batch([inputs], self.args.device)
                with torch.no_grad(), self.compute_loss_context_manager():
                    loss = self.compute_loss(model, inputs, num_items_in_batch=count)
                return loss.detach().mean(), None, None

        def compute_loss(self, model, inputs, *args, **kwargs):
            # training batches only: evaluation runs with the model in eval mode
            if self.token_counter is not None and model.training:
                self.token_counter.count(inputs)
            return super().compute_loss(model, inputs, *args, **kwargs)

    FasttuneTrainer.__name__ = FasttuneTrainer.__qualname__ = f"Fasttune{base.__name__}"
    return FasttuneTrainer


def build(trainer_class: type, hooks: RunHooks, **kwargs):
    """`trainer_class(**kwargs)` with fasttune's step and the run's callbacks."""
    with unhashed_maps():
        return fasttune_class(trainer_class)(callbacks=list(hooks.callbacks), token_counter=hooks.tokens, **kwargs)


@contextmanager
def unhashed_maps():
    """While a trainer is built, each `Dataset.map` gets a random fingerprint instead of a hash of its
    arguments. TRL's DPO and KTO trainers map their datasets with the tokenizer as an argument, and
    `datasets` hashes every argument to name the map's cache file: it pickles the whole tokenizer, seconds
    a map for a vocabulary as large as Gemma 3's (benchmarks/README.md). fasttune's datasets are built in
    memory from its own rows and have no cache file to name, so that hash buys nothing; a random
    fingerprint is what `datasets` itself gives a map whose arguments it cannot hash."""
    import datasets.arrow_dataset as arrow
    from datasets.fingerprint import generate_random_fingerprint

    hashed = arrow.update_fingerprint
    arrow.update_fingerprint = lambda *args, **kwargs: generate_random_fingerprint()
    try:
        yield
    finally:
        arrow.update_fingerprint = hashed


def build_sft_trainer(recipe, model, tokenizer, train_ds, eval_ds, hooks: RunHooks):
    """TRL's SFTTrainer over datasets that arrive already tokenized (input_ids + labels with -100 on
    untrained tokens): TRL skips its own templating and masking and only truncates, packs and collates."""
    from trl import SFTConfig, SFTTrainer  # after unsloth (backends.choose ran first)

    train = recipe.train
    mode = packing_mode(train.packing)
    collator = None
    if mode == "rows":
        from fasttune.trainer.packing import PackedRowsCollator, pack_rows

        train_ds = pack_rows(train_ds, recipe.data.max_seq_length)
        collator = PackedRowsCollator()
    has_eval = eval_ds is not None and len(eval_ds) > 0
    args = SFTConfig(
        **common_args(recipe, model, hooks.run_dir, hooks.run_name),
        **eval_args(recipe, has_eval),
        max_length=recipe.data.max_seq_length,
        packing=mode == "padding_free",
        padding_free=mode == "padding_free",
        # Without packing, batch examples of similar length so little compute goes to padding.
        train_sampling_strategy="group_by_length" if mode == "off" else "random",
    )
    return build(SFTTrainer, hooks, model=model, args=args, train_dataset=train_ds,
                 eval_dataset=eval_ds if has_eval else None, processing_class=tokenizer, data_collator=collator,
                 optimizers=(embedding_optimizer(model, train), None) if train.embedding_lr else (None, None))
