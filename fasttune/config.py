"""The typed sections of a recipe: Model, LoRA, Data, Train, Eval, Log, Export.

Each field's docstring (the string literal under it) is what `fasttune run RECIPE --help`
prints, so keep it short and say what the value does. `__post_init__` rejects values that
could only fail later, after minutes of model loading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from fasttune.drift_prompts import PROMPTS as _GENERAL_PROMPTS
from fasttune.errors import ConfigError
from fasttune.export import formats as export_formats


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _finite(value: float) -> bool:
    """inf (and nan, which fails every comparison anyway) parses as a float from the command line, and
    would only fail later: an epoch count without end, a learning rate that overflows the first update."""
    return math.isfinite(value)


EMBEDDINGS = ["embed_tokens", "lm_head"]
"""The modules `LoRA.train_embeddings` trains in full, as both backends' models name them."""


@dataclass
class LoRA:
    r: int = 16
    """LoRA rank: the width of the low-rank update. 8-64 is usual."""
    alpha: int = 16
    """LoRA scaling numerator; the update is scaled by alpha / r (alpha / sqrt(r) with use_rslora)."""
    dropout: float = 0.0
    """Dropout on the LoRA input. 0 is fastest (and what Unsloth optimises for)."""
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Linear layers that get LoRA adapters (all attention and MLP projections by default)."""
    train_embeddings: bool = False
    """Also train embed_tokens and lm_head in full (continued pre-training on new text/vocabulary)."""
    use_rslora: bool = False
    """Rank-stabilized LoRA: scale the update by alpha / sqrt(r), so a higher rank does not learn more
    slowly (peft's use_rslora)."""
    use_dora: bool = False
    """DoRA: each adapted weight split into a magnitude and a direction, the LoRA update applied to the
    direction (peft's use_dora). Slower per step: no fused LoRA path takes it, Unsloth's or fasttune's."""

    def __post_init__(self):
        _check(self.r > 0, f"lora.r must be positive, got {self.r}")
        _check(self.alpha > 0, f"lora.alpha must be positive, got {self.alpha}")
        _check(0.0 <= self.dropout < 1.0, f"lora.dropout must be in [0, 1), got {self.dropout}")
        _check(bool(self.target_modules), "lora.target_modules must name at least one module")


@dataclass
class Model:
    name: str = "smollm2-135m-instruct"
    """A Hugging Face hub id, a local model folder, a .gguf file, or a shipped model (offline):
    'smollm2-135m-instruct' or 'gemma3-270m'."""
    backend: Literal["auto", "unsloth", "hf"] = "auto"
    """'unsloth' (FastLanguageModel), 'hf' (transformers + peft), or 'auto': Unsloth when it imports."""
    load_in_4bit: bool = True
    """QLoRA: load the frozen base in 4-bit (bitsandbytes). Applies on CUDA; on CPU the base loads in 16/32-bit."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight dtype. 'auto': bfloat16 on GPUs that have it, float16 on older GPUs, the backend's choice on CPU."""
    chat_template: str = "auto"
    """'auto': the model's own chat template; for a model without one, its family's turns when its
    vocabulary holds their markers (Gemma), else ChatML. Or 'model', 'chatml', 'gemma', or a .jinja file.
    config.json records the one chosen."""
    full_finetune: bool = False
    """Train every weight instead of LoRA adapters (the lora section is then unused): four copies of the
    model (weights, gradients, AdamW's two moments), float32 unless model.dtype is 16-bit (`fasttune plan`).
    Needs model.load_in_4bit=false. The run keeps the full weights in model/ instead of adapter/."""
    lora: LoRA = field(default_factory=LoRA)

    def __post_init__(self):
        from fasttune.chat_template import FAMILIES

        valid = ("auto", "model", *FAMILIES)
        _check(self.chat_template in valid or self.chat_template.endswith(".jinja"),
               f"model.chat_template must be one of {', '.join(valid)} or a .jinja file, got {self.chat_template!r}")
        if self.full_finetune:
            _check(not self.load_in_4bit, "model.full_finetune trains every weight, and 4-bit weights cannot be "
                   "trained: set model.load_in_4bit=false (or train LoRA adapters on the 4-bit base instead)")
            lora_only = [f"model.lora.{name}" for name in ("use_dora", "use_rslora", "train_embeddings")
                         if getattr(self.lora, name)]
            _check(not lora_only, f"{', '.join(lora_only)}: LoRA settings, and model.full_finetune trains no LoRA "
                   "(every weight, embeddings included); drop them")

    def trains(self) -> str:
        """What training changes, in words (`fasttune check` and the run say it)."""
        if self.full_finetune:
            weights = "float32" if self.dtype == "auto" else self.dtype
            return f"every weight (full fine-tuning, {weights} weights)"
        lora = self.lora
        return (f"LoRA r={lora.r}, alpha {lora.alpha} on {', '.join(lora.target_modules)}"
                + (" + embeddings in full" if lora.train_embeddings else "")
                + "".join(f", {name}" for name in ("use_dora", "use_rslora") if getattr(lora, name)))


@dataclass
class Data:
    path: str = ""
    """Training data: a .jsonl/.json/.csv/.parquet file or a hub dataset id."""
    eval: float | str = 0.1
    """Held-out data: a fraction of `path` (0 to 0.5) or a file of its own."""
    split: str = "train"
    """Split to read when `path` is a hub dataset id."""
    max_seq_length: int | Literal["auto"] = 512
    """Longest example in tokens; longer ones are truncated (and counted).
    'auto': the longest training row, at most the model's context and what fits the GPU (`fasttune plan`)."""

    def __post_init__(self):
        _check(bool(self.path), "data.path is required: a data file or a hub dataset id")
        if isinstance(self.eval, float | int) and not isinstance(self.eval, bool):
            _check(0.0 <= self.eval <= 0.5, f"data.eval as a fraction must be in [0, 0.5], got {self.eval}")
        _check(self.max_seq_length == "auto" or self.max_seq_length >= 16,
               f"data.max_seq_length must be at least 16 or auto, got {self.max_seq_length}")


@dataclass
class Train:
    max_steps: int = -1
    """Optimizer steps to run; -1 trains for `epochs` instead."""
    epochs: float = 1.0
    """Passes over the training data (used when max_steps is -1)."""
    batch_size: int | Literal["auto"] = 4
    """Examples per device per step. 'auto': the largest that fits the GPU (`fasttune plan`); 4 on CPU."""
    grad_accum: int = 1
    """Gradient accumulation steps; the effective batch is batch_size * grad_accum."""
    lr: float = 2e-4
    """Peak learning rate."""
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    """Learning-rate schedule after warmup."""
    warmup_ratio: float = 0.05
    """Fraction of the steps spent warming the learning rate up from 0."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    seed: int = 3407
    """Seed for LoRA init, data shuffling and the eval split."""
    save_steps: int = 0
    """Write a checkpoint every N steps into checkpoints/ (0: only the final adapter)."""
    eval_steps: int = 0
    """Evaluate every N steps (0: only before and after training)."""
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    """Recompute activations in the backward pass: less memory, slower steps (Unsloth's offloaded mode on
    the Unsloth backend). 'auto': on with a GPU, off on CPU; `fasttune check` and the run say which."""
    packing: Literal["auto", "on", "off"] = "auto"
    """Pack short examples into full rows, attention kept apart: TRL's padding-free packing on a GPU,
    fasttune's packed rows on CPU. 'auto': on with a GPU; on CPU length-grouped batches."""
    embedding_lr: float = 0.0
    """Learning rate for embed_tokens/lm_head when lora.train_embeddings is on (0: same as lr);
    2-10x smaller is usual."""
    resume: str = ""
    """Continue from a checkpoint: a run folder (its latest checkpoint) or a checkpoint folder. '' starts fresh."""
    accelerate_config: str = ""
    """An `accelerate config` file (e.g. recipes/accelerate/ddp.yaml): `fasttune run` launches itself
    through `accelerate launch --config_file` with it. '' runs as started (one process, or the launcher's)."""

    def __post_init__(self):
        _check(self.max_steps == -1 or self.max_steps > 0,
               f"train.max_steps must be -1 or positive, got {self.max_steps}")
        _check(self.epochs > 0 and _finite(self.epochs), f"train.epochs must be positive and finite, got {self.epochs}")
        _check(self.batch_size == "auto" or self.batch_size > 0,
               f"train.batch_size must be positive or auto, got {self.batch_size}")
        _check(self.grad_accum > 0, f"train.grad_accum must be positive, got {self.grad_accum}")
        _check(self.lr > 0 and _finite(self.lr), f"train.lr must be positive and finite, got {self.lr}")
        _check(self.weight_decay >= 0 and _finite(self.weight_decay),
               f"train.weight_decay must be >= 0 (0: none), got {self.weight_decay}")
        _check(0.0 <= self.warmup_ratio < 1.0, f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _check(self.save_steps >= 0, f"train.save_steps must be >= 0, got {self.save_steps}")
        _check(self.eval_steps >= 0, f"train.eval_steps must be >= 0, got {self.eval_steps}")
        _check(self.embedding_lr >= 0 and _finite(self.embedding_lr),
               f"train.embedding_lr must be >= 0, got {self.embedding_lr}")

    def checkpointing(self, gpu: bool) -> bool:
        """gradient_checkpointing as it applies on a machine with (`gpu`) or without a GPU."""
        return gpu if self.gradient_checkpointing == "auto" else self.gradient_checkpointing


@dataclass
class Log:
    report_to: list[str] = field(default_factory=lambda: ["wandb"])
    """Trackers: ['wandb'] or []. W&B runs offline when there is no API key or no network."""
    project: str = "fasttune"
    """W&B project name."""
    runs_dir: str = "runs"
    """Folder that holds one run folder per run."""
    logging_steps: int = 1
    """Log loss and throughput every N steps."""

    def __post_init__(self):
        unknown = sorted(set(self.report_to) - {"wandb"})
        _check(not unknown, f"log.report_to knows only 'wandb', got {unknown}")
        _check(self.logging_steps > 0, f"log.logging_steps must be positive, got {self.logging_steps}")


@dataclass
class Eval:
    samples: int = 4
    """Held-out prompts whose answers before and after training are written to samples.md."""
    metric_rows: int = 200
    """Held-out rows the task metric is computed on, from real model outputs (0: all of them)."""
    max_new_tokens: int = 48
    """Longest generated answer, in tokens (samples and generation-based metrics)."""
    batch_size: int = 8
    """Prompts generated or scored at once."""
    thinking: Literal["default", "on", "off", "both"] = "default"
    """Thinking switch (enable_thinking) for held-out answers: the template's default, 'on', 'off', or
    'both' (the task metric and samples for each). Needs a template with the switch."""
    drift: bool = True
    """After training, compare the tuned model with the base (the adapter switched off) on fixed general
    prompts shipped with fasttune, not the task's: eval.json's drift (KL in nats, answers changed)."""
    drift_prompts: int = 50
    """How many of the 50 general prompts eval.drift asks (the first N, each kind in turn): fewer is
    quicker and a coarser figure."""

    def __post_init__(self):
        _check(self.samples >= 0, f"eval.samples must be >= 0, got {self.samples}")
        _check(self.metric_rows >= 0, f"eval.metric_rows must be >= 0, got {self.metric_rows}")
        _check(self.max_new_tokens > 0, f"eval.max_new_tokens must be positive, got {self.max_new_tokens}")
        _check(self.batch_size > 0, f"eval.batch_size must be positive, got {self.batch_size}")
        _check(1 <= self.drift_prompts <= len(_GENERAL_PROMPTS),
               f"eval.drift_prompts must be between 1 and {len(_GENERAL_PROMPTS)}, got {self.drift_prompts}")


@dataclass
class Export:
    formats: list[str] = field(default_factory=list)
    """Written into the run folder's export/ when training ends: 'adapter', 'merged' (16-bit HF), 'gguf'.
    The run's adapter/ is always there."""
    quants: list[str] = field(default_factory=lambda: ["f16"])
    """GGUF types to write: f16, bf16, q8_0 (written directly), q4_k_m, q5_k_m, q6_k (llama.cpp's quantizer)."""
    verify_prompts: int = 3
    """Held-out prompts each GGUF answers greedily, compared token by token with the merged HF model (0: skip)."""
    verify_tokens: int = 32
    """Tokens generated per verification prompt."""

    def __post_init__(self):
        export_formats.check(self.formats, self.quants)
        _check(self.verify_prompts >= 0, f"export.verify_prompts must be >= 0, got {self.verify_prompts}")
