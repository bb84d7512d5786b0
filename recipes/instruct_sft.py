"""Instruction SFT on the embedded SmolLM2-135M-Instruct: extract name, age, city and job as JSON.

Rows are {"prompt": ..., "completion": ...}; the loss is on the completion only. The eval file
(recipes/data/extract_eval.jsonl, made by make_extract_data.py) uses names, cities, jobs and
phrasings the training file never shows; eval.json reports the share of answers that parse as JSON
and the per-field exact match, before and after training.

    fasttune run recipes/instruct_sft.py
    fasttune run recipes/instruct_sft.py task.template=raw model.name=HuggingFaceTB/SmolLM2-135M
"""

from fasttune import Data, Eval, LoRA, Model, Recipe, Train, tasks

recipe = Recipe(
    task=tasks.InstructSFT(template="chat", metric="json"),
    model=Model(name="smollm2-135m-instruct", lora=LoRA(r=16, alpha=32)),
    data=Data(
        path="recipes/data/extract_train.jsonl",
        eval="recipes/data/extract_eval.jsonl",
        max_seq_length=256,
    ),
    train=Train(max_steps=60, batch_size=4, lr=5e-4),
    eval=Eval(samples=4, metric_rows=40, max_new_tokens=40),
)
