"""KTO on the embedded SmolLM2-135M-Instruct: the DPO demo's terse quick-answer style, learnt from single
replies marked good or bad instead of pairs.

Rows are {"prompt": ..., "completion": ..., "label": true|false} (recipes/data/kto_*.jsonl, made by
make_kto_data.py from the DPO demo's pairs: each prompt with one reply, half of them desirable). A
desirable reply is the answer alone ("70 millimeters"); an undesirable one says it in a full
sentence, is wrong, rambles, refuses or goes off topic. eval.json has the held-out KTO accuracy (the
share of replies whose implicit reward against the starting model has the sign of their label), the
mean reward of each kind and KTO's eval loss, before and after training.

    fasttune run recipes/kto.py
    fasttune run recipes/kto.py task.beta=0.3 train.max_steps=60
"""

from fasttune import Data, Eval, LoRA, Model, Recipe, Train, tasks

recipe = Recipe(
    task=tasks.KTO(beta=0.1),
    model=Model(name="smollm2-135m-instruct", lora=LoRA(r=16, alpha=32)),
    data=Data(path="recipes/data/kto_train.jsonl", eval="recipes/data/kto_eval.jsonl", max_seq_length=128),
    train=Train(max_steps=30, batch_size=8, lr=2e-4, warmup_ratio=0.0),
    eval=Eval(samples=4, metric_rows=0),  # KTO accuracy on all 40 held-out replies
)
