"""Chat SFT: train on conversations in a `messages` column, with loss on the assistant turns only.

Rows look like TRL's conversational format (and OpenAI's fine-tuning format):
    {"messages": [{"role": "system", "content": "..."},
                  {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}]}
The model's own chat template renders them (ChatML when it has none), so what the model learns is
exactly what `fasttune chat` and an exported model will show it at inference time.

Assistant messages may carry their reasoning in `reasoning_content` (or `thinking`): then the
model's template renders it if it can, otherwise fasttune's thinking ChatML puts it in a
<think>…</think> block before the answer (fasttune/thinking.py). Loss is on reasoning and answer
unless `train_on_reasoning=false`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fasttune import thinking
from fasttune.chat_template import tokenize_conversation
from fasttune.data.validate import blank, missing
from fasttune.tasks.base import SFTTask
from fasttune.tasks.reasoning import ReasoningData

ROLES = ("system", "user", "assistant")


@dataclass
class ChatSFT(ReasoningData, SFTTask):
    column: str = "messages"
    """Column holding each conversation (a list of {role, content} messages)."""
    train_on_reasoning: bool = True
    """Loss on the reasoning of assistant turns (reasoning_content / thinking) too; false: on the answers only."""

    name: ClassVar[str] = "chat_sft"

    def check_row(self, row: dict) -> list[tuple[str, str]]:
        """Problems with one row as (field, message): the checks OpenAI's data validator makes, roughly."""
        col = self.column
        if col not in row:
            return [missing(row, col)]
        messages = row[col]
        if not isinstance(messages, list) or not messages:
            return [(col, "must be a non-empty list of messages")]
        problems, seen_user = [], False
        for i, message in enumerate(messages):
            where = f"{col}[{i}]"
            if not isinstance(message, dict):
                problems.append((where, f"must be an object with role and content, got {type(message).__name__}"))
                continue
            role, content = message.get("role"), message.get("content")
            if role not in ROLES:
                problems.append((f"{where}.role", f"unknown role {role!r}; expected one of {', '.join(ROLES)}"))
            if not isinstance(content, str):
                wrong = "missing" if content is None else f"must be a string, got {type(content).__name__}"
                problems.append((f"{where}.content", wrong))
            elif role == "assistant" and blank(content):
                problems.append((f"{where}.content", "assistant message is empty"))
            problems += thinking.misplaced(message, f"{where}.") + (
                thinking.check_reasoning(message, f"{where}.") if role == "assistant" else [])
            if role == "assistant" and not seen_user:
                problems.append((f"{where}.role", "an assistant message comes before any user message"))
            seen_user = seen_user or role == "user"
        roles = {m.get("role") for m in messages if isinstance(m, dict)}
        if "user" not in roles:
            problems.append((col, "no user message"))
        if "assistant" not in roles:
            problems.append((col, "no assistant message: nothing to learn from this row"))
        return problems

    def tokenize(self, row: dict, tokenizer, max_length: int) -> dict:
        """input_ids and labels (assistant tokens only) for one validated row."""
        return tokenize_conversation(tokenizer, row[self.column], max_length,
                                     train_on_reasoning=self.train_on_reasoning).example()

    def row_has_reasoning(self, row: dict) -> bool:
        return thinking.has_reasoning(row[self.column])

    def prompt(self, row: dict) -> tuple[list[dict], str]:
        """A held-out prompt (the conversation before its last assistant turn) and that turn as reference."""
        messages = row[self.column]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        return messages[:last], messages[last]["content"]

