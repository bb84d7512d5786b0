"""DPO and its siblings: preference training on pairs of answers (TRL's DPOTrainer, or its ORPO and
CPO trainers for ORPO and SimPO; Unsloth patches each when it is the backend).

Rows: `prompt` (a string, or a list of chat messages), `chosen` and `rejected` (the preferred and
the worse reply, as strings). The policy learns to raise the likelihood of `chosen` relative to
`rejected`. DPO measures that against the starting model: with a LoRA model TRL needs no second
copy, the reference is the same model with its adapter switched off. ORPO and SimPO need no
reference at all: ORPO adds an odds-ratio term to the chosen reply's SFT loss, SimPO compares the
two replies' length-normalized log-probabilities against a target margin.

Metric: held-out preference accuracy, the share of eval pairs where the model's log-probability of
`chosen` beats that of `rejected` (both scored as the assistant reply to the prompt, end-of-turn
included), before and after training, plus the mean probability the model gives `chosen` within
the pair. Scoring reuses classification's exact reply scoring (fasttune/label_scoring.py) with the
pair as the two "labels".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

from fasttune.data.validate import require_text
from fasttune.errors import ConfigError
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

Loss = Literal["sigmoid", "ipo", "hinge", "robust", "orpo", "simpo"]


@dataclass
class DPO(Task):
    beta: float = 0.1
    """Strength of the pull toward the starting model: lower lets the policy move further from it."""
    loss_type: Loss = "sigmoid"
    """The loss: DPO's 'sigmoid' (the paper's), 'ipo', 'hinge' (SLiC) or 'robust' (noisy labels); or
    'orpo' (ORPO, beta the odds-ratio term's weight) or 'simpo' (SimPO, beta its reward scale; its
    paper uses 2 to 2.5): these two keep no reference model."""
    simpo_gamma: float = 0.5
    """SimPO's target margin between the chosen and rejected replies' rewards (loss_type='simpo')."""
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
        if self.loss_type not in get_args(Loss):
            raise ConfigError(f"task.loss_type must be one of {', '.join(get_args(Loss))}, got {self.loss_type!r}")

    def check_row(self, row: dict) -> list[tuple[str, str]]:
        problems = require_text(row, "chosen", "rejected") + prompt_problems(row, self.prompt_column)
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
        return rendered_by_trl(self, train_rows, eval_rows, tokenizer, max_length, lambda data: {
            "prompt": self.messages(data),
            **{k: [{"role": "assistant", "content": data[k]}] for k in ("chosen", "rejected")}})

    def trainer(self, recipe, model, tokenizer, train_ds, eval_ds, hooks):
        from fasttune.trainer.arguments import common_args, eval_args
        from fasttune.trainer.build import build

        # imported here, after unsloth (backends.choose ran first); ORPO and CPO live in trl.experimental
        if self.loss_type == "orpo":
            from trl.experimental.orpo import ORPOConfig as Config
            from trl.experimental.orpo import ORPOTrainer as Trainer
            loss, reference = {}, {}
        elif self.loss_type == "simpo":  # CPO's trainer with SimPO's loss and no SFT term (cpo_alpha 0)
            from trl.experimental.cpo import CPOConfig as Config
            from trl.experimental.cpo import CPOTrainer as Trainer
            loss, reference = {"loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": self.simpo_gamma}, {}
        else:
            from trl import DPOConfig as Config
            from trl import DPOTrainer as Trainer
            loss, reference = {"loss_type": [self.loss_type]}, {"ref_model": None}
        has_eval = len(eval_ds) > 0
        args = Config(**common_args(recipe, model, hooks.run_dir, hooks.run_name), **eval_args(recipe, has_eval),
                      max_length=recipe.data.max_seq_length, beta=self.beta, **loss)
        return build(Trainer, hooks, model=model, **reference, args=args, train_dataset=train_ds,
                     eval_dataset=eval_ds if has_eval else None, processing_class=tokenizer)

    def count_tokens(self, batch: dict) -> tuple[int, int]:
        """DPO stacks chosen and rejected in one batch, completion_mask marking the replies; ORPO and CPO
        keep them apart (chosen_* and rejected_*), labels -100 outside the replies."""
        if "completion_mask" in batch:
            return int(batch["attention_mask"].sum()), int(batch["completion_mask"].sum())
        sides = ("chosen", "rejected")
        return (sum(int(batch[f"{s}_attention_mask"].sum()) for s in sides),
                sum(int((batch[f"{s}_labels"] != -100).sum()) for s in sides))

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
