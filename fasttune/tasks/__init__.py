"""Tasks: one module each, holding how rows are checked, tokenized and sampled for that task."""

from fasttune.tasks.chat_sft import ChatSFT

__all__ = ["ChatSFT"]
