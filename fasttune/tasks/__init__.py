"""Tasks: one module each, holding how rows are checked, tokenized, prompted and scored."""

from fasttune.tasks.chat_sft import ChatSFT
from fasttune.tasks.classify import Classification
from fasttune.tasks.function_calling import FunctionCalling
from fasttune.tasks.grpo import GRPO
from fasttune.tasks.instruct_sft import InstructSFT
from fasttune.tasks.pretrain import ContinuedPretraining

__all__ = ["ChatSFT", "InstructSFT", "ContinuedPretraining", "Classification", "GRPO", "FunctionCalling"]
