"""DPO: preference training on pairs of answers (TRL's DPOTrainer; Unsloth patches it when it is the backend).

Rows: `prompt` (a string, or a list of chat messages), `chosen` and `rejected` (the preferred and
the worse reply, as strings). The policy learns to raise the likelihood of `chosen` relative to
`rejected`, measured against the starting model: with a LoRA model TRL needs no second copy, the
reference is the same model with its adapter switched off.

Metric: held-out preference accuracy, the share of eval pairs where the model's log-probability of
`chosen` beats that of `rejected` (both scored as the assistant reply to the prompt, end-of-turn
included), before and after training, plus the mean probability the model gives `chosen` within
the pair. Scoring reuses classification's exact reply scoring (fasttune/label_scoring.py) with the
pair as the two "labels".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from fasttune.data.prepare import PrepStats, to_dataset
from fasttune.data.validate import blank, missing, require_text
from fasttune.errors import ConfigError
from fasttune.tasks.base import RowView, Task, marked, message_problems, one_line, prompt_messages, share


@dataclass
class DPO(Task):
    beta: float = 0.1
    """Strength of the pull toward the starting model: lower lets the policy move further from it."""
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"
    """DPO's loss: 'sigmoid' (the paper's), 'ipo', 'hinge' (SLiC) or 'robust' (noisy labels)."""
    system_prompt: str = ""
    """A system message put before every prompt."""
    prompt_column: str = "prompt"
    """Column holding the prompt: a string or a list of chat messages."""

    name: ClassVar[str] = "dpo"
    scores_outputs: ClassVar[bool] = True
    sequences_per_row: ClassVar[int] = 2  # prompt + chosen and prompt + rejected, stacked in one batch

    def __post_init__(self):
        if self.beta <= 0:
            raise ConfigError(f"task.beta must be positive, got {self.beta}")

    def check_row(self, row: dict) -> list[tuple[str, str]]:
        col, problems = self.prompt_column, require_text(row, "chosen", "rejected")
        prompt = row.get(col)
        if col not in row:
            problems.append(missing(row, col))
        elif isinstance(prompt, list) and prompt:
            problems += message_problems(col, prompt)
        elif not (isinstance(prompt, str) and not blank(prompt)):
            problems.append((col, "must be a non-empty string or a list of messages"))
        if not problems and row["chosen"].strip() == row["rejected"].strip():
            problems.append(("rejected", "is the same as chosen: the pair prefers nothing"))
        return problems

    def messages(self, row: dict) -> list[dict]:
        return prompt_messages(row[self.prompt_column], self.system_prompt)

    def _pair(self, row: dict, tokenizer, max_length: int):
        from fasttune.chat_template import tokenize_conversation

        prompt = self.messages(row)
        return [tokenize_conversation(tokenizer, [*prompt, {"role": "assistant", "content": row[k]}], max_length)
                for k in ("chosen", "rejected")]

    def view_row(self, row: dict, tokenizer, max_length: int) -> RowView:
        """Both sequences (prompt + chosen, prompt + rejected) are trained on; the replies carry the loss."""
        whole = self._pair(row, tokenizer, 10**9)
        lengths = [len(p.input_ids) for p in whole]
        trained = sum(sum(t != -100 for t in p.labels[:max_length]) for p in whole)
        return RowView(sum(lengths), trained, sum(max(0, n - max_length) for n in lengths))

    def show_row(self, row: dict, tokenizer, max_length: int) -> str:
        chosen, rejected = self._pair(row, tokenizer, max_length)
        return ("chosen:\n" + marked(tokenizer, chosen.input_ids, [t != -100 for t in chosen.labels])
                + "\nrejected:\n" + marked(tokenizer, rejected.input_ids, [t != -100 for t in rejected.labels]))

    def datasets(self, train_rows: list, eval_rows: list, tokenizer, max_length: int):
        """TRL's conversational preference rows; TRL renders them with the tokenizer's chat template."""
        def pairs(rows, st: PrepStats):
            for row in rows:
                view = self.view_row(row.data, tokenizer, max_length)  # the figures are the truncated pair's
                st.figures.add(view)
                st.rows, st.truncated = st.rows + 1, st.truncated + (view.cut > 0)
                st.tokens, st.trained_tokens = st.tokens + view.tokens - view.cut, st.trained_tokens + view.trained
                yield {"prompt": self.messages(row.data),
                       **{k: [{"role": "assistant", "content": row.data[k]}] for k in ("chosen", "rejected")}}

        stats = {"train": PrepStats(), "eval": PrepStats()}
        train_ds, eval_ds = (to_dataset(pairs(rows, stats[split]))
                             for split, rows in (("train", train_rows), ("eval", eval_rows)))
        return train_ds, eval_ds, stats

    def trainer(self, recipe, model, tokenizer, train_ds, eval_ds, hooks):
        from trl import DPOConfig, DPOTrainer  # after unsloth (backends.choose ran first)

        from fasttune.trainer.arguments import common_args, eval_args
        from fasttune.trainer.build import build

        has_eval = len(eval_ds) > 0
        args = DPOConfig(
            **common_args(recipe, model, hooks.run_dir, hooks.run_name), **eval_args(recipe, has_eval),
            max_length=recipe.data.max_seq_length, beta=self.beta, loss_type=[self.loss_type],
        )
        return build(DPOTrainer, hooks, model=model, ref_model=None, args=args, train_dataset=train_ds,
                     eval_dataset=eval_ds if has_eval else None, processing_class=tokenizer)

    def count_tokens(self, batch: dict) -> tuple[int, int]:
        """Chosen and rejected sequences are stacked in one batch; completion_mask marks the replies."""
        return int(batch["attention_mask"].sum()), int(batch["completion_mask"].sum())

    def prompt(self, row: dict):
        return self.messages(row), {"chosen": row["chosen"], "rejected": row["rejected"]}

    def predict(self, model, tokenizer, prompts: list, references: list, cfg) -> list[str]:
        """For each pair, the probability the model gives `chosen` against `rejected`, as text."""
        from fasttune.label_scoring import label_probabilities

        answers = []
        for prompt, ref in zip(prompts, references):
            [[chosen, _]] = label_probabilities(model, tokenizer, [prompt], [ref["chosen"], ref["rejected"]])
            answers.append(f"{chosen:.4f}")
        return answers

    def metrics(self, predictions: list[str], references: list[dict], eval_loss: float | None) -> dict:
        if not predictions:
            return {}
        p_chosen = [float(p) for p in predictions]
        return {"preference_accuracy": share(p > 0.5 for p in p_chosen),
                "mean_p_chosen": round(sum(p_chosen) / len(p_chosen), 4), "rows": len(p_chosen)}

    def sample_answer(self, answer: str) -> str:
        p = float(answer)
        return f"prefers {'chosen' if p > 0.5 else 'rejected'} (p(chosen) within the pair {p:.2f})"

    def sample_reference(self, reference: dict) -> str:
        return f"chosen: {one_line(reference['chosen'], 160)} / rejected: {one_line(reference['rejected'], 160)}"
