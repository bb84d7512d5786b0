"""Write colab/<recipe>.ipynb for every recipe in recipes/, from the recipe files themselves.

    python colab/make_notebooks.py            # rewrite the notebooks
    python colab/make_notebooks.py --check    # exit 1 when a notebook differs from what this makes

A notebook is generated, never edited by hand: its title and story are the recipe's docstring, its
code calls fasttune's Python API (fasttune/api.py), and tests/test_notebooks.py fails when a
committed notebook differs from this script's output, so notebooks cannot drift from the recipes.
Outputs are never stored. Tagged cells matter to CI: `colab-install` (skipped there), `parameters`
(CI runs a cell after it that shrinks the run to a few steps on CPU) and `export` (the export and the
chat with its result, skipped where no test reads that notebook's export: tests/helpers.py's NOTEBOOK_CI).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
REPO = "https://github.com/fasttune/fasttune"  # where the Colab links and the install cell fetch the project
COLAB = "https://colab.research.google.com/github/fasttune/fasttune/blob/main/colab"

# What one row of each task's data looks like, and what to ask the trained model afterwards; keyed
# by task, or by recipe where a recipe's data differs from its task's usual rows.
FORMAT = {
    "chat_sft": "one JSON object per line with `messages`: a list of `{role, content}` turns (system, user, "
                "assistant). Loss is on the assistant turns only.",
    "instruct_sft": "`prompt` and `completion` strings. Loss is on the completion only.",
    "continued_pretraining": "`text`: raw documents, packed into fixed-length blocks. Every token is trained.",
    "classification": "`text` and `label`. The model answers with a label in its chat turn, and scoring "
                      "compares every valid label, so it can only ever answer one of them.",
    "grpo": "`prompt` plus any columns the reward functions read (here `answer`). No completions: GRPO samples "
            "several answers per prompt and moves towards the ones the rewards score higher.",
    "function_calling": "`messages` (with assistant `tool_calls` and `tool` results) and `tools`: JSON-schema "
                        "function definitions the conversation may call.",
    "dpo": "`prompt`, `chosen` and `rejected`: two answers, the preferred one first. DPO raises the chosen "
           "answer's likelihood relative to the rejected one against a frozen copy of the model.",
    "kto": "`prompt`, `completion` and `label`: one reply, `true` when it is a good one. KTO raises the good "
           "replies' likelihood and lowers the bad ones' against a frozen copy of the model; no pairs are needed.",
    "reasoning_sft": "`prompt`, `completion` and `reasoning_content`: the reasoning that leads to the completion. "
                     "It is rendered in a `<think>…</think>` block before the answer; loss is on both.",
}
ASK = {  # code that sets QUESTION, from the held-out data where it fits, for the chat at the end
    "chat_sft": 'QUESTION = next(m["content"] for m in first_eval_row["messages"] if m["role"] == "user")',
    "instruct_sft": 'QUESTION = first_eval_row["prompt"]',
    "continued_pretraining": 'QUESTION = "What does the collections module provide?"',
    "grpo": 'QUESTION = first_eval_row["prompt"]',
    "function_calling": 'QUESTION = next(m["content"] for m in first_eval_row["messages"] if m["role"] == "user")',
    "dpo": 'QUESTION = first_eval_row["prompt"]',
    "kto": 'QUESTION = first_eval_row["prompt"]',
}

TOOLS = {"function_calling": 'first_eval_row["tools"]'}  # tool definitions the chat passes (None elsewhere)
THINKING = {"reasoning_sft"}  # recipes whose model is asked twice: thinking on, then off


def recipe_facts(path: Path) -> tuple[str, str, int, int]:
    """(docstring, task name, max_steps, batch_size) of a recipe file, read by loading it."""
    sys.path.insert(0, str(ROOT))
    import fasttune

    recipe = fasttune.load(path)
    doc = ast.get_docstring(ast.parse(path.read_text())) or recipe.name
    return doc, recipe.task.name, recipe.train.max_steps, recipe.train.batch_size


def notebook(path: Path) -> nbformat.NotebookNode:
    doc, task, steps, batch = recipe_facts(path)
    title, _, story = doc.partition("\n")
    name = path.stem
    row_format = FORMAT.get(name) or FORMAT[task]
    gguf = task != "classification"  # a classifier answers by scoring labels, which a GGUF cannot
    cells = [
        new_markdown_cell(f"# {title}\n\n[Open in Colab]({COLAB}/{name}.ipynb) · recipe: `recipes/{name}.py`\n\n"
                          f"{story.strip()}\n\nThis notebook runs that recipe through fasttune's Python API: "
                          "look at the data, train, compare before and after, export, and talk to the result."),
        new_markdown_cell("## Install\nOn Colab (Runtime → Change runtime type → a GPU): this keeps Colab's torch "
                          "and Jupyter and installs fasttune with its GPU profile and Unsloth. It compiles nothing: "
                          "with torch already there it took 42 s on this project's 2-core test machine (not timed on "
                          "Colab)." + (" llama.cpp, which the GGUF export at the end needs, is compiled when that "
                                       "cell first runs (3.3 more minutes on that machine, once); `bash "
                                       "scripts/install.sh --gguf` here does it now instead." if gguf else "") +
                          " Elsewhere, run it from a clone of the repository after `bash scripts/install.sh`, and "
                          "skip this cell."),
        code(f"!git clone --depth 1 {REPO} fasttune\n%cd fasttune\n!bash scripts/install.sh", "colab-install"),
        new_markdown_cell("## Parameters\nThe recipe's own values. `MODEL` is the embedded SmolLM2-135M-Instruct "
                          "(nothing to download); any Hugging Face id or local folder works, e.g. "
                          "`\"unsloth/Qwen2.5-0.5B-Instruct\"`. `EXTRA` takes any other `section.field=value` "
                          f"override: `fasttune run recipes/{name}.py --help` lists them all."),
        code(f'MODEL = "smollm2-135m-instruct"\nMAX_STEPS = {steps}\nBATCH_SIZE = {batch}\n'
             f'EXPORT_QUANT = "q4_k_m"  # GGUF type: f16, q8_0, q4_k_m...\nEXTRA = []', "parameters"),
        new_markdown_cell(f"## The task and its data\nEach row is {row_format}\n\n`fasttune.check` shows the "
                          "data as the model will see it, before any model loads: row counts, token lengths, "
                          "what `max_seq_length` cuts, and one rendered example per split (the [[ ]] marks show "
                          "the trained tokens)."),
        code(f'import fasttune\n\nrecipe = fasttune.load("recipes/{name}.py", f"model.name={{MODEL}}",\n'
             '                       f"train.max_steps={MAX_STEPS}", f"train.batch_size={BATCH_SIZE}", *EXTRA)\n'
             'with open(recipe.data.path) as f:\n    print("first training row:", f.readline())\n'
             'report = fasttune.check(recipe)'),
        new_markdown_cell("## Train\nEvaluation runs before and after training on the held-out split, with the "
                          "progress bar in between; the run folder keeps everything (config, metrics, samples, "
                          "adapter)."),
        code("run = fasttune.train(recipe)\nrun"),
        new_markdown_cell("## What changed\nThe loss curve" + (" and the confusion matrices" if task == "classification"
                                                               else "") + ", then the held-out figures before and "
                          "after, and the sample answers."),
        code("import pandas as pd\nfrom IPython.display import Image, display\n\nfor figure in run.figures:\n"
             "    display(Image(filename=str(figure)))\ndisplay(pd.DataFrame(run.compare()))"),
        code('pd.set_option("display.max_colwidth", 200)\npd.DataFrame(run.samples)'),
        new_markdown_cell("## Export\n" + ("GGUF for llama.cpp and Ollama (checked against the merged model: how "
                                           "many greedy tokens agree on held-out prompts), and merged 16-bit weights "
                                           "for transformers and vLLM. The first GGUF export installs llama.cpp "
                                           "(pip compiles it, once: minutes)." if gguf else
                                           "Merged 16-bit weights. A classifier answers by scoring every label, "
                                           "which a GGUF runtime cannot do, so there is no GGUF for this task.")),
        code(f'report = run.export({json.dumps(["gguf", "merged"] if gguf else ["merged"])}, quant=EXPORT_QUANT)\n'
             'for item in report["exports"]:\n    print(item["format"], item.get("quant", ""), item["path"])\n'
             '    if "verification" in item:\n        print("  agreement with the merged model:", '
             '{k: v for k, v in item["verification"].items() if k != "prompts"})\n'
             '    if "modelfile" in item:\n        print("  Ollama: ollama create my-model -f", item["modelfile"])',
             "export"),
    ]
    if task == "classification":
        cells += [new_markdown_cell("## Ask it\n`run.predict` is `fasttune predict`: every label's probability, "
                                    "the likeliest wins."),
                  code('pd.DataFrame(run.predict(["wake me at 7 tomorrow", "add oat milk to the list"]))')]
    else:
        cells += [new_markdown_cell("## Talk to the exported model\nA held-out question, answered by the GGUF "
                                    "through llama.cpp with the chat template it was trained with" +
                                    (", with thinking on and then off." if name in THINKING else ".")),
                  code('import json\n\nwith open(recipe.data.eval) as f:\n'
                       '    first_eval_row = json.loads(f.readline())\n'
                       f'{ASK[task]}\nTOOLS = {TOOLS.get(task)}\n'
                       'gguf = next(i["path"] for i in report["exports"] '
                       'if i["format"] == "gguf")\nprint(QUESTION)\n' + (
                           'for mode in ("on", "off"):\n    print(f"-> thinking {mode}:", fasttune.chat('
                           'gguf, QUESTION, max_new_tokens=96, thinking=mode))' if name in THINKING else
                           'print("->", fasttune.chat(gguf, QUESTION, tools=TOOLS, max_new_tokens=64))'), "export")]
    cells += [
        new_markdown_cell("## Your own data\nUpload a JSONL file in the format above (Colab: the folder icon, or "
                          "`from google.colab import files; files.upload()`), then point the recipe at it. "
                          "`data.eval=0.1` holds out 10% of it; bad rows are reported with file, line and field "
                          "before anything loads.\n\n```python\nrecipe = fasttune.load(\"recipes/" + name +
                          ".py\", \"data.path=my_data.jsonl\", \"data.eval=0.1\")\nfasttune.check(recipe)\n"
                          "run = fasttune.train(recipe)\n```"),
        new_markdown_cell("## Weights & Biases\nWith a W&B key the run is logged online; without one (or without "
                          "network) it is logged offline in the run folder, to upload later with `wandb sync`. "
                          "On Colab, store the key under Secrets as `WANDB_API_KEY` and, before training, run "
                          "`import os; from google.colab import userdata; "
                          "os.environ[\"WANDB_API_KEY\"] = userdata.get(\"WANDB_API_KEY\")`. "
                          "`log.report_to=[]` turns W&B off."),
        code("print(run.wandb)"),
    ]
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}, "accelerator": "GPU", "colab": {"provenance": []}})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name}-{i}"  # stable ids, so regeneration is byte-identical
    return nb


def code(source: str, tag: str | None = None):
    return new_code_cell(source, metadata={"tags": [tag]} if tag else {})


def render(path: Path) -> str:
    return nbformat.writes(notebook(path)) + "\n"


def stale(folder: Path, write: bool = False) -> list[str]:
    """Notebooks in `folder` that differ from what the recipes make (missing ones too); rewritten
    when `write`."""
    found = []
    for recipe in sorted((ROOT / "recipes").glob("*.py")):
        target = folder / f"{recipe.stem}.ipynb"
        text = render(recipe)
        if target.is_file() and target.read_text() == text:
            continue
        found.append(target.name)
        if write:
            target.write_text(text)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report notebooks that differ; write nothing")
    args = parser.parse_args()
    found = stale(ROOT / "colab", write=not args.check)
    if args.check and found:
        sys.exit(f"out of date (run python colab/make_notebooks.py): {', '.join(found)}")
    print(f"{'stale' if args.check else 'written'}: {', '.join(found) or 'none'}")


if __name__ == "__main__":
    main()
