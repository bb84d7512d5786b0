"""fasttune: fine-tune LLMs fast on one GPU, from short recipe files.

The public API: what a recipe imports (Recipe and its sections, tasks, rewards) and what a notebook
calls (load, check, train, chat, Run; see fasttune/api.py). Nothing here imports torch, transformers
or trl.
"""

from fasttune import rewards, tasks
from fasttune.api import Run, chat, check, load, train
from fasttune.config import Data, Eval, Export, Log, LoRA, Model, Train
from fasttune.recipe import Recipe

__version__ = "0.1.0"
__all__ = ["load", "check", "train", "chat", "Run",
           "Recipe", "Model", "LoRA", "Data", "Train", "Eval", "Log", "Export", "tasks", "rewards"]
