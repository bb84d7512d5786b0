"""Instruction SFT: `prompt` and `completion` columns (the Predibase / TRL prompt-completion format),
loss on the completion tokens only.

By default the prompt is the user turn of the model's chat template and the completion its answer,
which is right for instruct models. `template="raw"` concatenates prompt + completion + EOS for base
models that have no chat format; samples and metrics then continue the raw prompt the same way.

A row may carry the completion's reasoning in a `reasoning_content` (or `thinking`) column: it
becomes the assistant turn's reasoning (see chat_sft.py), trained unless `train_on_reasoning=false`,
and metrics score the final answer, what follows the think block.

Metrics on held-out prompts, from greedy answers:
- `metric="json"`: share of answers that parse as a JSON object, and per-field exact match against
  the reference object (the fields are the reference's keys);
- `metric="exact"`: share of answers equal to the reference (whitespace-trimmed);
- `metric="none"`: eval loss and samples only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar, Literal

from fasttune import thinking
from fasttune.chat_template import IGNORE, Tokenized, tokenize_conversation
from fasttune.data.validate import require_text
from fasttune.tasks.base import SFTTask, share
from fasttune.tasks.reasoning import ReasoningData


@dataclass
class InstructSFT(ReasoningData, SFTTask):
    template: Literal["chat", "raw"] = "chat"
    """'chat': prompt as the user turn of the chat template; 'raw': prompt + completion + EOS, for base models."""
    metric: Literal["json", "exact", "none"] = "exact"
    """Held-out metric from generated answers: 'json' (valid JSON + per-field match), 'exact' match, or 'none'."""
    train_on_reasoning: bool = True
    """Loss on the completion's reasoning (reasoning_content / thinking column) too; false: on the answer only."""

    name: ClassVar[str] = "instruct_sft"
    scores_outputs: ClassVar[bool] = True

    def check_row(self, row: dict) -> list[tuple[str, str]]:
        problems = require_text(row, "prompt", "completion") + thinking.check_reasoning(row, "")
        key = thinking.reasoning_key(row)
        if self.template == "raw" and key:
            problems.append((key, "template='raw' has no place for reasoning; use template='chat'"))
        if not problems and self.metric == "json" and _as_object(row["completion"]) is None:
            problems.append(("completion", "metric='json' needs every completion to be a JSON object"))
        return problems

    def tokenize(self, row: dict, tokenizer, max_length: int) -> dict:
        if self.template == "chat":
            return tokenize_conversation(tokenizer, self.messages(row), max_length,
                                         train_on_reasoning=self.train_on_reasoning).example()
        prompt_ids = tokenizer(row["prompt"])["input_ids"]  # BOS where the model uses one
        completion_ids = tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return Tokenized.cut(prompt_ids + completion_ids, [IGNORE] * len(prompt_ids) + completion_ids,
                             max_length).example()

    @staticmethod
    def messages(row: dict) -> list[dict]:
        key = thinking.reasoning_key(row)
        reasoning = {thinking.REASONING: row[key]} if key else {}
        return [{"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": row["completion"], **reasoning}]

    def row_has_reasoning(self, row: dict) -> bool:
        return thinking.reasoning_key(row) is not None

    def prompt(self, row: dict):
        prompt = row["prompt"] if self.template == "raw" else self.messages(row)[:1]
        return prompt, row["completion"]

    def metrics(self, predictions: list[str], references: list[str], eval_loss: float | None) -> dict:
        if self.metric == "none" or not predictions:
            return {}
        predictions = [thinking.split_answer(p)[1] for p in predictions]  # the answer after any think block
        if self.metric == "exact":
            return {"exact_match": share(p.strip() == r.strip() for p, r in zip(predictions, references))}
        parsed = [_as_object(p) for p in predictions]
        refs = [_as_object(r) for r in references]
        fields = sorted({k for r in refs for k in r})
        per_field = {f: share(p is not None and f in p and p[f] == r.get(f) for p, r in zip(parsed, refs) if f in r)
                     for f in fields}
        return {
            "json_valid": share(p is not None for p in parsed),
            "exact_match": share(p == r for p, r in zip(parsed, refs)),
            "field_match": per_field,
            "rows": len(predictions),
        }


def _as_object(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None
