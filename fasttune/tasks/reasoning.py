"""What the SFT tasks whose rows may carry reasoning share (chat_sft.py, instruct_sft.py): choosing
the template from the data, and samples that show an answer's thinking apart from its final answer.
The field names, checks and the thinking switch are fasttune/thinking.py.
"""

from __future__ import annotations

from abc import abstractmethod

from fasttune.chat_template import ensure_thinking_template
from fasttune.tasks.base import one_line
from fasttune.thinking import split_answer


class ReasoningData:
    """For SFT tasks whose rows may carry reasoning (mixed in before SFTTask). Whether any row does
    is known from `check_dataset`, which `fasttune run` and `fasttune check` call before
    `setup_tokenizer`: then a template that cannot render reasoning gives way to fasttune's thinking
    ChatML, and data without reasoning keeps the model's own template exactly as before."""

    reasoning_rows = 0  # set by check_dataset; not a dataclass field, so config.json never records it

    @abstractmethod
    def row_has_reasoning(self, row: dict) -> bool:
        """Whether one validated row carries reasoning (an empty one included)."""

    def check_dataset(self, train_rows: list, eval_rows: list) -> list[str]:
        self.reasoning_rows = sum(self.row_has_reasoning(r.data) for rows in (train_rows, eval_rows) for r in rows)
        if not self.reasoning_rows:
            return []
        return [f"{self.reasoning_rows} of {len(train_rows) + len(eval_rows)} rows carry reasoning "
                f"(rendered in a think block before the answer)"]

    def setup_tokenizer(self, tokenizer, setting: str = "auto"):
        if not self.reasoning_rows:
            return super().setup_tokenizer(tokenizer, setting)
        return ensure_thinking_template(tokenizer, setting)

    def sample_answer(self, answer: str) -> str:
        """The thinking and the final answer apart; an answer without a think block as it is."""
        thought, final = split_answer(answer)
        if thought is None:
            return one_line(answer)
        return f"_thinking:_ {one_line(thought) or '(empty)'} — _answer:_ {one_line(final) or '(none)'}"
