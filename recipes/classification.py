"""Classification on the embedded SmolLM2-135M-Instruct: which of 6 smart-home intents a request is.

Rows are {"text": ..., "label": ...}. The model answers in its chat turn, and evaluation (and
`fasttune predict`) scores every valid label as that answer and takes the likeliest, so it can only
ever answer a valid label (see fasttune/tasks/classify.py). The eval file uses phrasings and slot
values the training file never shows; eval.json has accuracy, macro-F1 and the majority-class
baseline before and after training, and confusion.png the confusion matrices.

    fasttune run recipes/classification.py
    fasttune predict runs/classification-<time> --text "wake me at 7 tomorrow"
"""

from fasttune import Data, Eval, LoRA, Model, Recipe, Train, tasks

recipe = Recipe(
    task=tasks.Classification(),  # labels: every label in the training data
    model=Model(name="smollm2-135m-instruct", lora=LoRA(r=16, alpha=32)),
    data=Data(
        path="recipes/data/intent_train.jsonl",
        eval="recipes/data/intent_eval.jsonl",
        max_seq_length=128,
    ),
    train=Train(max_steps=60, batch_size=8, lr=5e-4),
    eval=Eval(samples=4, metric_rows=0),  # metric on all 80 held-out rows
)
