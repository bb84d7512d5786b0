"""Merged export: the LoRA delta added into 16-bit base weights, saved in the plain HF layout.

The base weights always come from the original checkpoint (`model.name` resolved again), never from
the model as it was trained: a QLoRA run trained against a 4-bit copy, and merging into that copy
would bake the 4-bit rounding into every weight (or, dequantized and re-quantized, round twice).
The merge is done in float32 and the result stored in the checkpoint's 16-bit dtype (bfloat16 if
the checkpoint is bfloat16, otherwise float16).
"""

from __future__ import annotations

from pathlib import Path

from fasttune.run_folder import FinishedRun, write_dir


def merge(run: FinishedRun, out_dir: Path, say=print) -> dict:
    """Write base + adapter merged into `out_dir` (via a temporary folder); return what was done."""
    import torch
    from transformers import AutoConfig

    from fasttune import models
    from fasttune.chat_template import end_of_turn_ids

    base_path = run.base_path(say)
    stored = getattr(AutoConfig.from_pretrained(base_path), "dtype", None)
    dtype = torch.bfloat16 if str(stored).endswith("bfloat16") else torch.float16
    say(f"Merging {run.adapter} into {run.model_name} ({base_path}, loaded in float32) -> {dtype}")
    model, tokenizer = run.load_model(torch.float32, say)
    merged = model.merge_and_unload().to(dtype)
    merged.config.use_cache = True
    merged.generation_config.eos_token_id = end_of_turn_ids(tokenizer)  # stop where training's turns end

    write_dir(out_dir, lambda tmp: (merged.save_pretrained(tmp), tokenizer.save_pretrained(tmp)))
    return {
        "format": "merged",
        "path": str(out_dir),
        "dtype": str(dtype).replace("torch.", ""),
        "base_weights": f"{run.model_name} from {base_path} (the original checkpoint, not the training copy; "
                        f"{'dequantized from GGUF' if models.is_gguf_source(run.model_name) else 'as published'})",
        "size_bytes": sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file()),
    }
