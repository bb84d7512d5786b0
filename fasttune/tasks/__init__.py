"""Tasks: one module each, holding how rows are checked, tokenized, prompted and scored.

TASKS is the registry: config.json records a task by its class name, and `task_class` finds the
class again (fasttune/run_folder.py, fasttune/recipe.py). A new task adds one line here.
"""

from fasttune.errors import ConfigError
from fasttune.tasks.base import SFTTask, Task
from fasttune.tasks.chat_sft import ChatSFT
from fasttune.tasks.classify import Classification
from fasttune.tasks.dpo import DPO
from fasttune.tasks.function_calling import FunctionCalling
from fasttune.tasks.grpo import GRPO
from fasttune.tasks.instruct_sft import InstructSFT
from fasttune.tasks.kto import KTO
from fasttune.tasks.pretrain import ContinuedPretraining

TASKS: dict[str, type[Task]] = {cls.__name__: cls for cls in (
    ChatSFT, InstructSFT, ContinuedPretraining, Classification, GRPO, FunctionCalling, DPO, KTO,
)}


def task_class(type_name: str) -> type[Task]:
    """The task class config.json names as `task.type`."""
    if type_name not in TASKS:
        raise ConfigError(f"unknown task type {type_name!r}; known: {', '.join(TASKS)}")
    return TASKS[type_name]


__all__ = ["Task", "SFTTask", "TASKS", "task_class", *TASKS]
