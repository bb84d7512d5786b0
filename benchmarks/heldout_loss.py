"""One judge for every trained adapter in the throughput benchmark: mean loss per assistant token
on the held-out chat conversations, computed the same way for each.

    python benchmarks/heldout_loss.py --model BASE_DIR --adapter ADAPTER_DIR [--data FILE]

Why: the training losses the runs log are not comparable. Each averages over the tokens of its own
batches (fasttune groups rows by length on CPU, plain TRL does not), and plain TRL's rows train only
the last assistant reply. A speed ratio means something only at equal learning, so every adapter is
scored here on the same rows, the same tokens (every assistant turn, as fasttune's masks mark them)
and in float32. Prints one JSON object: {"heldout_loss": ..., "tokens": ..., "rows": ...}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the base model folder")
    parser.add_argument("--adapter", required=True, help="a LoRA adapter folder trained on that base")
    parser.add_argument("--data", default=str(ROOT / "recipes/data/chat_eval.jsonl"))
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fasttune.chat_template import IGNORE, tokenize_conversation

    tokenizer = AutoTokenizer.from_pretrained(args.model)  # the base's template for every adapter
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, args.adapter).eval()
    total, tokens, rows = 0.0, 0, 0
    for line in Path(args.data).read_text().splitlines():
        out = tokenize_conversation(tokenizer, json.loads(line)["messages"], args.max_length)
        ids, labels = torch.tensor([out.input_ids]), torch.tensor([out.labels])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        target = labels[0, 1:]
        kept = target != IGNORE
        total += float(torch.nn.functional.cross_entropy(logits[kept], target[kept], reduction="sum"))
        tokens += int(kept.sum())
        rows += 1
    print(json.dumps({"heldout_loss": round(total / tokens, 4), "tokens": tokens, "rows": rows}))


if __name__ == "__main__":
    main()
