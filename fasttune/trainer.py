"""Build TRL's SFTTrainer from a recipe: the one place recipe fields become SFTConfig arguments.

The datasets arrive already tokenized (input_ids + labels with -100 on untrained tokens), so TRL
skips its own templating and masking and only truncates, packs and collates.
"""

from __future__ import annotations

from pathlib import Path

from fasttune.distributed import on_cpu


def packing_mode(setting: str) -> str:
    """How examples share rows: 'padding_free' (TRL's packing, on a GPU), 'rows' (fasttune's packed
    batches, on CPU: fasttune/data/pack.py says why) or 'off' (one example per row, length-grouped).

    'auto' packs on a GPU only. On CPU packing raises tokens/s ~1.4x (Unsloth's CPU path, measured
    in benchmarks/throughput.py) but a step then holds ~4x the tokens of a chat batch, so a recipe's
    max_steps would take ~2.8x as long as its author planned: there it is `train.packing=on`."""
    if setting == "off":
        return "off"
    import torch

    if torch.cuda.is_available():
        return "padding_free"
    return "rows" if setting == "on" else "off"


def mixed_precision(model) -> dict:
    """bf16/fp16 autocast flags matching the weights: bf16 where the GPU has it, else fp16; on CPU
    only when the backend loaded bfloat16 weights (Unsloth does on CPUs with native bf16)."""
    import torch

    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": not bf16}
    return {"bf16": model.get_input_embeddings().weight.dtype == torch.bfloat16, "fp16": False}


def embedding_optimizer(model, train):
    """AdamW with a separate learning rate for fully trained embed_tokens / lm_head copies, as in
    Unsloth's continued-pretraining recipe; the scheduler still comes from the Trainer. Built here
    rather than through UnslothTrainer so that both backends share it."""
    import torch

    embedding, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (embedding if ("embed_tokens" in name or "lm_head" in name) else rest).append(param)
    groups = [{"params": rest, "lr": train.lr}, {"params": embedding, "lr": train.embedding_lr}]
    return torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay)


def common_args(recipe, model, run_dir: Path, run_name: str) -> dict:
    """The TrainingArguments every fasttune trainer (SFT, GRPO) shares, from the recipe."""
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
        # The recipe's choice, passed on: TRL's SFTConfig defaults to True, and the Trainer then turned
        # checkpointing on even where the recipe (and the backend's load) had it off.
        gradient_checkpointing=train.gradient_checkpointing,
        seed=train.seed,
        logging_steps=log.logging_steps,
        save_strategy="steps" if train.save_steps else "no",
        **({"save_steps": train.save_steps, "save_total_limit": 2} if train.save_steps else {}),
        report_to=list(log.report_to) or "none",
        disable_tqdm=True,  # fasttune draws its own progress bar
        dataloader_pin_memory=False,
        **({"use_cpu": True} if on_cpu() else {}),  # several processes over gloo
        # Under DDP every LoRA weight gets a gradient each step; the Trainer's default for a peft model
        # (True) walks the autograd graph again every step looking for unused ones, and warns that it found none.
        ddp_find_unused_parameters=False,
        **mixed_precision(model),
    )


def around_steps(trainer, context):
    """Run the Trainer's training and evaluation steps inside `context()`. Not around compute_loss:
    training_step also holds the backward, where gradient checkpointing recomputes the forward, and
    a forward changed by `context` has to be recomputed the same way."""
    for name in ("training_step", "prediction_step"):
        def wrapped(*args, _step=getattr(trainer, name), **kwargs):
            with context():
                return _step(*args, **kwargs)

        setattr(trainer, name, wrapped)
    return trainer


def fused_lora_on_cpu(trainer):
    """On CPU with bf16 autocast (Unsloth's CPU path loads bf16 weights), the Trainer's steps run the
    LoRA layers fused (fasttune/fused_lora.py): no fp32 round trip of each input through peft's
    cast, the scale and the adds inside the matmuls. Generation and scoring outside the Trainer keep
    peft's forward, whose cast they need (no autocast there)."""
    import torch

    from fasttune.fused_lora import fused_lora_linears

    if not torch.cuda.is_available() and trainer.args.bf16:
        around_steps(trainer, lambda: fused_lora_linears(trainer.model))
    return trainer


def with_packed_rows_attention(trainer):
    """The Trainer's steps over fasttune's packed batches run with fasttune/packed_attention.py,
    which attends each example on its own; the model keeps its own attention everywhere else
    (generation, scoring)."""
    from fasttune.packed_attention import packed_rows_attention

    return around_steps(trainer, lambda: packed_rows_attention(trainer.model))


def without_printer(trainer):
    """Drop transformers' PrinterCallback: it prints raw log dicts, fasttune's callback shows them."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def build_sft_trainer(recipe, model, tokenizer, train_ds, eval_ds, run_dir: Path, run_name: str, callbacks: list):
    from trl import SFTConfig, SFTTrainer  # after unsloth (backends.choose ran first)

    train = recipe.train
    mode = packing_mode(train.packing)
    collator = None
    if mode == "rows":
        from fasttune.data.pack import PackedRowsCollator, pack_rows

        train_ds = pack_rows(train_ds, recipe.data.max_seq_length)
        collator = PackedRowsCollator()
    has_eval = eval_ds is not None and len(eval_ds) > 0
    args = SFTConfig(
        **common_args(recipe, model, run_dir, run_name),
        per_device_eval_batch_size=train.batch_size,
        eval_strategy="steps" if train.eval_steps and has_eval else "no",
        **({"eval_steps": train.eval_steps} if train.eval_steps and has_eval else {}),
        max_length=recipe.data.max_seq_length,
        packing=mode == "padding_free",
        padding_free=mode == "padding_free",
        # Without packing, batch examples of similar length so little compute goes to padding.
        train_sampling_strategy="group_by_length" if mode == "off" else "random",
    )
    trainer = fused_lora_on_cpu(without_printer(SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds if has_eval else None,
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=callbacks,
        optimizers=(embedding_optimizer(model, train), None) if train.embedding_lr else (None, None),
    )))
    return with_packed_rows_attention(trainer) if mode == "rows" else trainer
