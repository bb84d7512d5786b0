"""The baseline a user would otherwise run: transformers + peft + TRL's SFTTrainer, as a tutorial
writes it, with no fasttune code. benchmarks/throughput.py runs it beside fasttune's backends on
the same model, data, LoRA, batch, length, learning rate and schedule.

    python benchmarks/plain_trl.py --model MODEL_DIR --steps 20 --out result.json

Loss mask: each conversation becomes TRL's conversational prompt-completion row (everything before
the last assistant reply, then that reply), so TRL trains the completion only, as fasttune trains
assistant turns. They differ only on rows with two assistant turns (48 of 320 in the chat demo),
where fasttune also trains the first reply. tokens/s counts every non-padding token, as fasttune does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rows(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        messages = json.loads(line)["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        out.append({"prompt": messages[:last], "completion": [messages[last]]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a local HF model folder")
    parser.add_argument("--data", default=str(ROOT / "recipes/data/chat_train.jsonl"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--out", required=True)
    parser.add_argument("--adapter-out", help="save the trained LoRA adapter here (for heldout_loss.py)")
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    seen = {"tokens": 0}
    losses = []

    class Count(TrainerCallback):  # the tutorial has no token count; the benchmark needs one
        def on_log(self, a, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append({"step": state.global_step, "loss": logs["loss"]})

    class CountedSFTTrainer(SFTTrainer):
        """Plain TRL, plus a count of the non-padding tokens of every training micro-batch."""

        def compute_loss(self, model, inputs, *a, **kw):
            if model.training:
                mask = inputs.get("attention_mask")
                seen["tokens"] += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            return super().compute_loss(model, inputs, *a, **kw)

    trainer = CountedSFTTrainer(
        model=model,
        args=SFTConfig(output_dir=str(Path(args.out).with_suffix(".out")), max_steps=args.steps,
                       per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
                       lr_scheduler_type="linear", warmup_steps=args.warmup_ratio, max_length=args.max_length,
                       logging_steps=1, save_strategy="no", report_to="none", seed=args.seed, bf16=False),
        train_dataset=Dataset.from_list(rows(Path(args.data))),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"]),
        callbacks=[Count()],
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = trainer.train()
    runtime = time.perf_counter() - started
    peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None
    if args.adapter_out:
        trainer.save_model(args.adapter_out)
    Path(args.out).write_text(json.dumps({
        "steps": result.global_step, "train_tokens": seen["tokens"], "train_runtime_s": round(runtime, 1),
        "train_loss": result.training_loss, "losses": losses,
        "train_peak_gpu_memory_gib": peak_gib}) + "\n")


if __name__ == "__main__":
    main()
