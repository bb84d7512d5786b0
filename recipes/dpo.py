"""DPO on the embedded SmolLM2-135M-Instruct: a terse quick-answer style, the right answer and nothing else.

Rows are {"prompt": ..., "chosen": ..., "rejected": ...} (recipes/data/pref_*.jsonl, made by
make_preference_data.py; the eval file uses question templates and facts the training file never
shows). `chosen` is the answer alone ("70 millimeters"); `rejected` says it in a full sentence
(what the model prefers before training), or is wrong, rambling, a refusal or off topic. eval.json
has the held-out preference accuracy (the share of pairs where the model's log-probability of
`chosen` beats `rejected`) and the DPO eval loss, before and after training.

    fasttune run recipes/dpo.py
    fasttune run recipes/dpo.py task.beta=0.3 train.max_steps=60
"""

from fasttune import Data, Eval, LoRA, Model, Recipe, Train, tasks

recipe = Recipe(
    task=tasks.DPO(beta=0.1),
    model=Model(name="smollm2-135m-instruct", lora=LoRA(r=16, alpha=32)),
    data=Data(path="recipes/data/pref_train.jsonl", eval="recipes/data/pref_eval.jsonl", max_seq_length=128),
    train=Train(max_steps=30, batch_size=4, lr=2e-4, warmup_ratio=0.0),
    eval=Eval(samples=4, metric_rows=0),  # preference accuracy on all 40 held-out pairs
)
