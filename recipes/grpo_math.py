"""GRPO on the embedded SmolLM2-135M-Instruct: arithmetic word problems, rewarded for the right number.

Rows are {"prompt": ..., "answer": ...} (recipes/data/math_*.jsonl, made by make_math_data.py; the
eval file uses templates and numbers the training file never shows). Each reward function gets the
`answer` column; eval.json has the held-out accuracy (the mean of answer_match) and mean rewards
before and after training. GRPO samples num_generations completions per prompt, so a step costs
several generations.

    fasttune run recipes/grpo_math.py
    fasttune run recipes/grpo_math.py train.max_steps=100 task.beta=0
"""

from fasttune import Data, Eval, LoRA, Model, Recipe, Train, rewards, tasks

recipe = Recipe(
    task=tasks.GRPO(
        rewards=[rewards.answer_match("answer"), rewards.think_format(), rewards.length_penalty(200)],
        reward_weights=[1.0, 0.2, 0.2],
        system_prompt="Solve the problem. Think briefly inside <think></think>, then write only the final number.",
        num_generations=4,
        max_completion_length=64,
        temperature=1.0,
        beta=0.04,
    ),
    model=Model(name="smollm2-135m-instruct", lora=LoRA(r=16, alpha=32)),
    data=Data(path="recipes/data/math_train.jsonl", eval="recipes/data/math_eval.jsonl", max_seq_length=256),
    train=Train(max_steps=30, batch_size=4, lr=5e-5, warmup_ratio=0.0),
    eval=Eval(samples=4, metric_rows=40, max_new_tokens=64),
)
