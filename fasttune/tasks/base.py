"""What every task provides, with the defaults most tasks keep. A task is a dataclass of its own
options (they become `task.*` recipe fields) plus these methods; run.py calls nothing else.

    check_row(row)            -> [(field, message)]   one row's problems, before any model loads
    setup_tokenizer(tokenizer) -> str                the chat template in use (ChatML when none)
    check_dataset(train, eval) -> [note]             whole-data checks (e.g. the label set); notes to print
    datasets(train, eval, tokenizer, max_length) -> (train_ds, eval_ds, {split: PrepStats})
    trainer(recipe, model, tokenizer, train_ds, eval_ds, run_dir, run_name, callbacks) -> a TRL trainer
    tokenize(row, tokenizer, max_length) -> {input_ids, labels, truncated}   (for the SFT default above)
    count_tokens(batch)       -> (seen, trained)      tokens of one training micro-batch, for tokens/s
    prompt(row)               -> (prompt, reference)  a prompt is a message list or raw text
    predict(model, tokenizer, prompts, cfg) -> [answer]
    metrics(predictions, references, eval_loss) -> {name: value}
    write_artifacts(run_dir, before, after)          extra files for the run folder (plots)
"""

from __future__ import annotations

from typing import ClassVar


class Task:
    name: ClassVar[str] = ""
    packs_documents: ClassVar[bool] = False
    """True: tokenized rows are concatenated and cut into full max_seq_length rows (pre-training)."""
    scores_outputs: ClassVar[bool] = False
    """True: metrics() needs predictions for eval.metric_rows prompts, not just the samples."""
    has_eval_loss: ClassVar[bool] = True
    """False for objectives without a held-out loss (GRPO): eval is the task metric alone."""

    def setup_tokenizer(self, tokenizer) -> str:
        """Make sure the tokenizer has the chat template this task trains with; say which."""
        from fasttune.chat_template import ensure_chat_template

        return ensure_chat_template(tokenizer)

    def check_dataset(self, train_rows: list, eval_rows: list) -> list[str]:
        """Checks across rows (raise DataError); returns notes for the console. Most tasks need none."""
        return []

    def datasets(self, train_rows: list, eval_rows: list, tokenizer, max_length: int):
        """Tokenized input_ids/labels datasets for SFT (fasttune/data/prepare.py)."""
        from fasttune.data.prepare import tokenize_rows

        train_ds, train_stats = tokenize_rows(self, train_rows, tokenizer, max_length)
        eval_ds, eval_stats = tokenize_rows(self, eval_rows, tokenizer, max_length)
        return train_ds, eval_ds, {"train": train_stats, "eval": eval_stats}

    def trainer(self, recipe, model, tokenizer, train_ds, eval_ds, run_dir, run_name: str, callbacks: list):
        """TRL's SFTTrainer over the tokenized datasets (fasttune/trainer.py)."""
        from fasttune.trainer import build_sft_trainer

        return build_sft_trainer(recipe, model, tokenizer, train_ds, eval_ds, run_dir, run_name, callbacks)

    def count_tokens(self, batch: dict) -> tuple[int, int]:
        """(non-padding tokens, tokens with a loss) of one training micro-batch (fasttune/throughput.py)."""
        from fasttune.throughput import count_lm_batch

        return count_lm_batch(batch)

    def predict(self, model, tokenizer, prompts: list, cfg) -> list[str]:
        """Greedy generation with the training template (the model is already in inference mode)."""
        from fasttune.generate import generate

        return generate(model, tokenizer, prompts, cfg.max_new_tokens, cfg.batch_size)

    def metrics(self, predictions: list[str], references: list[str], eval_loss: float | None) -> dict:
        return {}

    def write_artifacts(self, run_dir, before: dict, after: dict) -> None:
        """Task-specific files for the run folder, from the before/after measurements."""
