"""Recipe -> TrainingArguments: the one place recipe fields become the arguments every TRL trainer
(SFT, GRPO, DPO) shares, and the choices that follow the device (precision, packing mode).
"""

from __future__ import annotations

from pathlib import Path

from fasttune.distributed import on_cpu


def packing_mode(setting: str) -> str:
    """How examples share rows: 'padding_free' (TRL's packing, on a GPU), 'rows' (fasttune's packed
    batches on CPU, fasttune/trainer/packing.py) or 'off' (one example per row, length-grouped).

    'auto' packs on a GPU only: on CPU a packed step holds several times the tokens of a chat batch,
    so a recipe's max_steps would take several times as long as its author planned (the figures are in
    benchmarks/README.md); there packing is asked for with `train.packing=on`."""
    if setting == "off":
        return "off"
    import torch

    if torch.cuda.is_available():
        return "padding_free"
    return "rows" if setting == "on" else "off"


def mixed_precision(model) -> dict:
    """bf16/fp16 autocast flags: on a GPU fasttune/precision.py's rule (bf16 where native, else fp16
    with loss scaling); on CPU bf16 when the backend loaded bfloat16 weights (Unsloth does on CPUs
    with native bf16), or when every weight trains in float32 (a full fine-tuning's master weights) on a
    CPU with native bf16, where bf16 matmuls are faster than float32 ones."""
    import torch

    from fasttune import precision

    if precision.cuda():
        bf16 = precision.native_bf16()
        return {"bf16": bf16, "fp16": not bf16}
    weights = model.get_input_embeddings().weight.dtype
    full_fp32 = weights == torch.float32 and not hasattr(model, "peft_config")
    bf16 = weights == torch.bfloat16 or (full_fp32 and precision.cpu_native_bf16())
    # transformers refuses bf16 without a GPU unless told the run is on CPU
    return {"bf16": bf16, "fp16": False, **({"use_cpu": True} if bf16 else {})}


def embedding_optimizer(model, train):
    """AdamW with a separate learning rate for fully trained embed_tokens / lm_head copies, as in
    Unsloth's continued-pretraining recipe; the scheduler still comes from the Trainer. Built here
    rather than through UnslothTrainer so that both backends share it."""
    import torch

    from fasttune.config import EMBEDDINGS

    embedding, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (embedding if any(e in name for e in EMBEDDINGS) else rest).append(param)
    groups = [{"params": rest, "lr": train.lr}, {"params": embedding, "lr": train.embedding_lr}]
    return torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay)


def common_args(recipe, model, run_dir: Path, run_name: str) -> dict:
    """The TrainingArguments every fasttune trainer (SFT, GRPO, DPO) shares, from the recipe."""
    train, log = recipe.train, recipe.log
    return dict(
        output_dir=str(run_dir / "checkpoints"),
        run_name=run_name,
        max_steps=train.max_steps,
        num_train_epochs=train.epochs,
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.lr,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=train.weight_decay,
        # The recipe's choice, passed on: TRL's SFTConfig defaults to True, and the Trainer would then
        # turn checkpointing on even where the recipe (and the backend's load) had it off.
        gradient_checkpointing=train.gradient_checkpointing,
        seed=train.seed,
        logging_steps=log.logging_steps,
        save_strategy="steps" if train.save_steps else "no",
        **({"save_steps": train.save_steps, "save_total_limit": 2} if train.save_steps else {}),
        report_to=list(log.report_to) or "none",
        disable_tqdm=True,  # fasttune draws its own progress bar
        dataloader_pin_memory=False,
        # Under DDP every LoRA weight gets a gradient each step; the Trainer's default for a peft model
        # (True) walks the autograd graph again every step looking for unused ones, and warns that it found none.
        ddp_find_unused_parameters=False,
        **{**({"use_cpu": True} if on_cpu() else {}), **mixed_precision(model)},  # on_cpu: several processes, gloo
    )


def eval_args(recipe, has_eval: bool) -> dict:
    """Held-out evaluation during training: every train.eval_steps steps when there are held-out rows."""
    every = recipe.train.eval_steps if has_eval else 0
    return dict(per_device_eval_batch_size=recipe.train.batch_size, eval_strategy="steps" if every else "no",
                **({"eval_steps": every} if every else {}))


TRAINER_ARGS = "trainer_args.json"


def as_built(trainer) -> dict:
    """trainer_args.json: the trainer's class (the first one not fasttune's: TRL's, or Unsloth's
    compiled copy of it) and the arguments it holds (transformers masks tokens in them). What reached
    the trainer can be read back from it rather than inferred from the recipe: GRPO's loss type and
    clipping, the precision and packing fasttune chose for the device, whether the model it trains has
    LoRA layers and how many of its parameters train."""
    import json

    made_by = next(c for c in type(trainer).__mro__ if not c.__module__.startswith("fasttune"))
    params = list(trainer.model.parameters())
    model = {"class": type(trainer.model).__name__, "lora": hasattr(trainer.model, "peft_config"),
             "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
             "parameters": sum(p.numel() for p in params)}
    return {"trainer": f"{made_by.__module__}.{made_by.__name__}", "model": model,
            "args": json.loads(trainer.args.to_json_string())}
