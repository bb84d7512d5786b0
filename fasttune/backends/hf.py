"""The transformers + peft backend: the fallback when Unsloth is missing, and the path to several
GPUs through every accelerate engine (docs/distributed.md): under DDP each process puts the model on
its own LOCAL_RANK device; under FSDP / DeepSpeed the model loads unplaced and accelerate shards it.
4-bit QLoRA through bitsandbytes when CUDA is present.
"""

from __future__ import annotations

import os

from fasttune.config import EMBEDDINGS
from fasttune.memory import BackendMemory

NAME = "hf"
MEMORY = BackendMemory(
    fp32_on_4bit=True,  # prepare_model_for_kbit_training casts embeddings, lm_head and the residual stream
    offloads_checkpoints=False,  # checkpointed layer inputs stay on the GPU
    logit_bytes=5,  # fitted: fp32 logits plus part of their gradient at the peak
)


def load(model_cfg, path: str, max_seq_length: int, gradient_checkpointing: bool, seed: int):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from fasttune import precision
    from fasttune.backends.quantization import use_4bit
    from fasttune.distributed import sharded

    cuda = torch.cuda.is_available()
    # None: CPU, where bf16 is emulated (slow) on most CPUs and fp16 matmuls are worse
    dtype = precision.weights_dtype(model_cfg) or torch.float32
    kwargs = {"dtype": dtype}
    if cuda:
        if not sharded():
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
        if use_4bit(model_cfg):
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype,
                # FSDP shards tensors of one dtype: 4-bit weights packed into the compute dtype (peft's FSDP-QLoRA)
                **({"bnb_4bit_quant_storage": dtype} if sharded() else {}),
            )
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path, model_max_length=max_seq_length)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if "quantization_config" in kwargs:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    if model_cfg.full_finetune:  # every weight trains, in the dtype it loaded in
        return model, tokenizer
    lora = model_cfg.lora
    torch.manual_seed(seed)
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM",
        modules_to_save=EMBEDDINGS if lora.train_embeddings else None,
        ensure_weight_tying=lora.train_embeddings,  # tied input/output embeddings stay one matrix
        use_rslora=lora.use_rslora, use_dora=lora.use_dora,
    )
    return get_peft_model(model, config), tokenizer


def for_inference(model) -> None:
    model.eval()


def for_training(model) -> None:
    model.train()


def check_stack(say) -> None:
    """transformers + peft on any stack fasttune installs: nothing to warn about."""
    return None


def gpu_path_missing() -> list[str]:
    """`auto` picks this backend where Unsloth cannot run: its kernels are what the GPU path lacks."""
    return ["Unsloth does not import (see backend reason)"]
