"""Function calling on the embedded SmolLM2-135M-Instruct: weather, unit conversion, calendar, time.

Rows are {"tools": [...], "messages": [...]} in the TRL / OpenAI format (recipes/data/tools_*.jsonl,
made by make_tool_data.py; the eval file uses cities, units, titles, time zones and phrasings the
training file never shows). SmolLM2's own template knows no tools, so fasttune's tool-calling
ChatML renders them (see fasttune/chat_template.py); it travels with the adapter and every export.
eval.json has, before and after training: the share of answers holding a valid tool call, the right
tool name, and exactly the right arguments.

    fasttune run recipes/function_calling.py
    fasttune chat runs/function_calling-<time>    # talks the same template
"""

from fasttune import Data, Eval, LoRA, Model, Recipe, Train, tasks

recipe = Recipe(
    task=tasks.FunctionCalling(),
    model=Model(name="smollm2-135m-instruct", lora=LoRA(r=16, alpha=32)),
    data=Data(path="recipes/data/tools_train.jsonl", eval="recipes/data/tools_eval.jsonl", max_seq_length=768),
    train=Train(max_steps=30, batch_size=4, lr=5e-4),
    eval=Eval(samples=4, metric_rows=40, max_new_tokens=64),
)
