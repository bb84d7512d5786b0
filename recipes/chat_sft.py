"""Chat SFT on the embedded SmolLM2-135M-Instruct: teach it Captain Byte's answer format.

The demo data (recipes/data/, made by make_chat_data.py) are short questions answered by a pirate
who always starts with "Ahoy! " and ends with " Arr!". The eval file holds facts the training
file never mentions, so samples.md shows whether the style, not the facts, was learned.

    fasttune run recipes/chat_sft.py
    fasttune run recipes/chat_sft.py model.name=Qwen/Qwen2.5-0.5B-Instruct train.max_steps=200
    fasttune run recipes/chat_sft.py --help     # every field, its default and what it does
"""

from fasttune import Data, Eval, Log, LoRA, Model, Recipe, Train, tasks

recipe = Recipe(
    task=tasks.ChatSFT(),
    model=Model(
        name="smollm2-135m-instruct",  # embedded and offline; or any hub id / folder / .gguf
        load_in_4bit=True,  # QLoRA on a GPU; on CPU the base loads unquantized
        lora=LoRA(r=16, alpha=32),
    ),
    data=Data(
        path="recipes/data/chat_train.jsonl",
        eval="recipes/data/chat_eval.jsonl",
        max_seq_length=256,
    ),
    train=Train(
        max_steps=60,
        batch_size=4,
        grad_accum=1,
        lr=5e-4,
        warmup_ratio=0.05,
    ),
    eval=Eval(samples=4),
    log=Log(report_to=["wandb"]),
)
