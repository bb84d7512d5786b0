"""KTO: preference training from single replies marked good or bad (TRL's KTOTrainer; Unsloth patches
it when it is the backend).

Rows: `prompt` (a string, or a list of chat messages), `completion` (a reply, a string) and `label`
(true: a desirable reply, false: an undesirable one). No pairs are needed: thumbs-up/down logs are
enough. The policy raises the likelihood of desirable replies and lowers that of undesirable ones,
each measured against the starting model (with a LoRA model, the same model with its adapter
switched off) and against a KL estimate from mismatched prompt/reply pairs of the batch.

Metric: held-out `kto_accuracy`, the share of rows whose implicit reward has the sign of its label.
The reward is KTO's own: the reply's log-probability under the tuned model minus under the starting
model (each the sum over the reply's tokens and end of turn, scored as classification scores
labels), positive for desirable, negative for undesirable. Before training the two models are one,
every reward is 0 and the accuracy is 0; `mean_reward_desirable` and `mean_reward_undesirable` show
how far each side moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fasttune.data.validate import missing, require_text
from fasttune.errors import ConfigError, DataError, Problem
from fasttune.tasks.base import (
    RowView,
    Task,
    marked,
    one_line,
    prompt_messages,
    prompt_problems,
    rendered_by_trl,
    share,
)


@dataclass
class KTO(Task):
    beta: float = 0.1
    """Strength of the pull toward the starting model: lower lets the policy move further from it."""
    desirable_weight: float = 1.0
    """Weight of the desirable rows' loss. Desirable weight x count at 1 to 4/3 times the undesirable
    side's is the advised balance; `fasttune check` and the run say when the data is outside it."""
    undesirable_weight: float = 1.0
    """Weight of the undesirable rows' loss."""
    system_prompt: str = ""
    """A system message put before every prompt."""
    prompt_column: str = "prompt"
    """Column holding the prompt: a string or a list of chat messages."""

    name: ClassVar[str] = "kto"
    scores_outputs: ClassVar[bool] = True
    sequences_per_row: ClassVar[int] = 2  # each reply and a mismatched one for the KL estimate
    full_finetune_refusal: ClassVar[str | None] = (
        "KTO's held-out metric measures each reply against the starting model, which a LoRA run has by switching "
        "its adapter off; fully fine-tuned, that would be a second whole model in memory. Train LoRA adapters "
        "(drop model.full_finetune)")

    def __post_init__(self):
        if self.beta <= 0:
            raise ConfigError(f"task.beta must be positive, got {self.beta}")
        if self.desirable_weight <= 0 or self.undesirable_weight <= 0:
            raise ConfigError(f"task.desirable_weight and task.undesirable_weight must be positive, got "
                              f"{self.desirable_weight} and {self.undesirable_weight}")

    def check_row(self, row: dict) -> list[tuple[str, str]]:
        problems = require_text(row, "completion") + prompt_problems(row, self.prompt_column)
        if "label" not in row:
            problems.append(missing(row, "label"))
        elif not isinstance(row["label"], bool):
            problems.append(("label", f"must be true or false (desirable or not), got {row['label']!r}"))
        return problems

    def check_dataset(self, train_rows: list, eval_rows: list) -> list[str]:
        good = sum(r.data["label"] for r in train_rows)
        bad = len(train_rows) - good
        if not good or not bad:
            raise DataError([Problem(train_rows[0].where.rsplit(":", 1)[0], "label",
                                     f"every training row is {'desirable' if good else 'undesirable'}: KTO needs "
                                     "some rows of each kind")])
        notes = [f"Replies: {good} desirable, {bad} undesirable"]
        ratio = (good * self.desirable_weight) / (bad * self.undesirable_weight)
        if not 1 <= ratio <= 4 / 3:  # the bounds earlier TRL KTOTrainers warned outside of (huggingface/trl#1467)
            notes.append(f"Warning: desirable weight x count is {ratio:.2f} times the undesirable side's (advised: "
                         "1 to 1.33); set task.desirable_weight / task.undesirable_weight to bring it there")
        return notes

    def messages(self, row: dict) -> list[dict]:
        return prompt_messages(row[self.prompt_column], self.system_prompt)

    def _tokenized(self, row: dict, tokenizer, max_length: int):
        from fasttune.chat_template import tokenize_conversation

        reply = {"role": "assistant", "content": row["completion"]}
        return tokenize_conversation(tokenizer, [*self.messages(row), reply], max_length)

    def view_row(self, row: dict, tokenizer, max_length: int) -> RowView:
        whole = self._tokenized(row, tokenizer, 10**9)
        trained = sum(t != -100 for t in whole.labels[:max_length])
        return RowView(len(whole.input_ids), trained, max(0, len(whole.input_ids) - max_length))

    def show_row(self, row: dict, tokenizer, max_length: int) -> str:
        seq = self._tokenized(row, tokenizer, max_length)
        kind = "desirable" if row["label"] else "undesirable"
        return f"{kind}:\n" + marked(tokenizer, seq.input_ids, [t != -100 for t in seq.labels])

    def datasets(self, train_rows: list, eval_rows: list, tokenizer, max_length: int):
        """TRL's conversational unpaired preference rows; TRL renders them with the chat template."""
        return rendered_by_trl(self, train_rows, eval_rows, tokenizer, max_length, lambda data: {
            "prompt": self.messages(data), "completion": [{"role": "assistant", "content": data["completion"]}],
            "label": data["label"]})

    def trainer(self, recipe, model, tokenizer, train_ds, eval_ds, hooks):
        from trl import KTOConfig, KTOTrainer  # after unsloth (backends.choose ran first)

        from fasttune.trainer.arguments import common_args, eval_args
        from fasttune.trainer.build import build

        has_eval = len(eval_ds) > 0
        args = KTOConfig(**common_args(recipe, model, hooks.run_dir, hooks.run_name), **eval_args(recipe, has_eval),
                         max_length=recipe.data.max_seq_length, beta=self.beta,
                         desirable_weight=self.desirable_weight, undesirable_weight=self.undesirable_weight)
        return build(KTOTrainer, hooks, model=model, ref_model=None, args=args, train_dataset=train_ds,
                     eval_dataset=eval_ds if has_eval else None, processing_class=tokenizer)

    def count_tokens(self, batch: dict) -> tuple[int, int]:
        """The replies and their mismatched KL partners are seen; completion_mask marks the trained reply."""
        seen = int(batch["attention_mask"].sum()) + int(batch["KL_attention_mask"].sum()) \
            if "KL_attention_mask" in batch else int(batch["attention_mask"].sum())
        return seen, int(batch["completion_mask"].sum())

    def prompt(self, row: dict):
        return self.messages(row), {"completion": row["completion"], "label": row["label"]}

    def predict(self, model, tokenizer, prompts: list, references: list, cfg) -> list[str]:
        """For each row, KTO's implicit reward as text: the reply's log-probability under the model minus
        under the starting model (the adapter switched off)."""
        from fasttune.label_scoring import reply_log_probability

        answers = []
        for prompt, ref in zip(prompts, references):
            tuned = reply_log_probability(model, tokenizer, prompt, ref["completion"])
            with model.disable_adapter():
                start = reply_log_probability(model, tokenizer, prompt, ref["completion"])
            answers.append(f"{tuned - start:.4f}")
        return answers

    def metrics(self, predictions: list[str], references: list[dict], eval_loss: float | None) -> dict:
        if not predictions:
            return {}
        rewards = [float(p) for p in predictions]
        sides = {label: [r for r, ref in zip(rewards, references) if ref["label"] is label] for label in (True, False)}
        return {"kto_accuracy": share((r > 0) if ref["label"] else (r < 0) for r, ref in zip(rewards, references)),
                "mean_reward_desirable": round(sum(sides[True]) / len(sides[True]), 4) if sides[True] else None,
                "mean_reward_undesirable": round(sum(sides[False]) / len(sides[False]), 4) if sides[False] else None,
                "rows": len(rewards)}

    def sample_answer(self, answer: str) -> str:
        return f"implicit reward {float(answer):+.3f} (log-probability against the starting model)"

    def sample_reference(self, reference: dict) -> str:
        kind = "desirable" if reference["label"] else "undesirable"
        return f"{kind}: {one_line(reference['completion'], 300)}"
