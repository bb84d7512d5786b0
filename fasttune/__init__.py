"""fasttune: fine-tune LLMs fast on one GPU, from short recipe files.

The public API is what a recipe imports; nothing here imports torch, transformers or trl.
"""

from fasttune import rewards, tasks
from fasttune.config import Data, Eval, Export, Log, LoRA, Model, Train
from fasttune.recipe import Recipe

__version__ = "0.1.0"
__all__ = ["Recipe", "Model", "LoRA", "Data", "Train", "Eval", "Log", "Export", "tasks", "rewards"]
