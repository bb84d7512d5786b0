"""What every task provides, with the defaults most tasks keep. A task is a dataclass of its own
options (they become `task.*` recipe fields) plus these methods; run.py calls nothing else.

    check_row(row)            -> [(field, message)]   one row's problems, before any model loads
    check_dataset(train, eval) -> [note]             whole-data checks (e.g. the label set); notes to print
    tokenize(row, tokenizer, max_length) -> {input_ids, labels, truncated}
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

    def check_dataset(self, train_rows: list, eval_rows: list) -> list[str]:
        """Checks across rows (raise DataError); returns notes for the console. Most tasks need none."""
        return []

    def predict(self, model, tokenizer, prompts: list, cfg) -> list[str]:
        """Greedy generation with the training template (the model is already in inference mode)."""
        from fasttune.generate import generate

        return generate(model, tokenizer, prompts, cfg.max_new_tokens, cfg.batch_size)

    def metrics(self, predictions: list[str], references: list[str], eval_loss: float | None) -> dict:
        return {}

    def write_artifacts(self, run_dir, before: dict, after: dict) -> None:
        """Task-specific files for the run folder, from the before/after measurements."""
