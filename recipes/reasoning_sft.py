"""Reasoning SFT on the embedded SmolLM2-135M-Instruct: unit conversions, thought out step by step.

Rows are {"prompt", "reasoning_content", "completion"} (recipes/data/reasoning_*.jsonl, made by
make_reasoning_data.py; eval converts quantities the training file never converts, asked in words
it never uses). SmolLM2's template has no reasoning, so fasttune's thinking ChatML renders it:
"<think>\\n…\\n</think>\\n\\n" before the answer, loss on both (task.train_on_reasoning=false: on the
answer only). eval.json reports the final-answer accuracy (exact match of what follows the think
block) with thinking on and with thinking off (an empty think block prefilled), before and after.

    fasttune run recipes/reasoning_sft.py
    fasttune chat runs/reasoning_sft-<time> --prompt "How many hours are in 5 days?" --thinking off
"""

from fasttune import Data, Eval, LoRA, Model, Recipe, Train, tasks

recipe = Recipe(
    task=tasks.InstructSFT(template="chat", metric="exact"),
    model=Model(name="smollm2-135m-instruct", lora=LoRA(r=16, alpha=32)),
    data=Data(
        path="recipes/data/reasoning_train.jsonl",
        eval="recipes/data/reasoning_eval.jsonl",
        max_seq_length=128,
    ),
    train=Train(max_steps=60, batch_size=4, lr=5e-4),
    eval=Eval(samples=4, metric_rows=32, max_new_tokens=64, batch_size=16, thinking="both"),
)
