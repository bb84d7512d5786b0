"""Continued pre-training: raw documents in a `text` column, loss on every token.

Documents get an EOS at their end and are packed end to end into full `max_seq_length` rows (TRL's
"wrapped" packing), so no compute goes to padding and a document's end teaches the model where text
stops. Attention may cross a document boundary inside a row, as in ordinary pre-training; the EOS
marks it.

Users of Unsloth's continued-pretraining notebooks also train `embed_tokens` and `lm_head` (new
domain vocabulary, new languages) with a smaller learning rate: set `lora.train_embeddings=True`
and `train.embedding_lr`. The metric is held-out perplexity, exp(eval loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from fasttune.chat_template import Tokenized
from fasttune.data.validate import require_text
from fasttune.tasks.base import SFTTask


@dataclass
class ContinuedPretraining(SFTTask):
    column: str = "text"
    """Column holding each document."""
    prompt_chars: int = 200
    """Samples continue the first this-many characters of a held-out document."""

    name: ClassVar[str] = "continued_pretraining"
    packs_documents: ClassVar[bool] = True

    def check_row(self, row: dict) -> list[tuple[str, str]]:
        return require_text(row, self.column)

    def tokenize(self, row: dict, tokenizer, max_length: int) -> dict:
        # Not truncated: packing cuts documents into rows, nothing is thrown away.
        ids = tokenizer(row[self.column])["input_ids"] + [tokenizer.eos_token_id]
        return Tokenized(ids, list(ids), truncated=False).example()

    def prompt(self, row: dict) -> tuple[str, str]:
        text = row[self.column]
        cut = text.rfind(" ", 0, self.prompt_chars)
        cut = cut if cut > 0 else min(len(text), self.prompt_chars)
        return text[:cut], text[cut:].strip()

    def metrics(self, predictions: list[str], references: list[str], eval_loss: float | None) -> dict:
        return {"perplexity": round(math.exp(eval_loss), 3)} if eval_loss is not None else {}
