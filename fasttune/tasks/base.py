"""The task contract: what `fasttune run`, `fasttune check`, evaluation, samples, tracking and export
may ask of a task.

A task is a dataclass of its own options (they become `task.*` recipe fields) that subclasses
`Task` and implements its abstract methods; Python refuses to build one that misses any. Shared
code calls only what is declared here and never asks which task it has: what differs between
tasks (how samples print, whether a GGUF makes sense, extra progress-line fields) is declared here
and answered by the task.

Two kinds exist:
- `SFTTask`: supervised tasks. They implement `tokenize(row)` (input_ids + labels with -100 on
  untrained tokens) and get tokenized datasets, TRL's SFTTrainer and `fasttune check`'s views from
  the base.
- tasks with their own trainer (GRPO, DPO) subclass `Task` and implement `datasets`, `trainer`,
  `view_row` and `show_row`.

A new task is one module in fasttune/tasks/ plus its entry in fasttune/tasks/__init__.py.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict

from fasttune.data.validate import blank, missing

Message = dict[str, Any]
"""A chat message: {"role": ..., "content": ...} (assistant turns may carry "tool_calls")."""


class ToolPrompt(TypedDict):
    """A conversation with the tools it may call (function calling)."""

    messages: list[Message]
    tools: list[dict]


Prompt = str | list[Message] | ToolPrompt
"""What a model is asked: raw text to continue, a conversation, or a conversation with tools."""

Reference = Any
"""What a held-out prompt should get, as the task's `metrics` reads it; JSON-serializable, since
`fasttune run` writes it into the run folder (eval_prompts.json)."""

TRAINED_OPEN, TRAINED_CLOSE = "[[", "]]"
"""How `show_row` marks the text whose tokens carry the loss."""


@dataclass
class RowView:
    """One row as the trainer will see it (`fasttune check`)."""

    tokens: int
    """Its length in tokens, before max_seq_length cuts it."""
    trained: int
    """Tokens that carry the loss, after the cut."""
    cut: int
    """Tokens max_seq_length cuts off (0 when nothing is cut)."""


class Task(ABC):
    name: ClassVar[str] = ""
    """Short name, shown in the console and eval.json."""
    scores_outputs: ClassVar[bool] = False
    """True: metrics() needs predictions for eval.metric_rows prompts, not just the samples."""
    has_eval_loss: ClassVar[bool] = True
    """False for objectives without a held-out loss (GRPO): eval is the task metric alone."""
    gguf_refusal: ClassVar[str | None] = None
    """Why this task's model must not go to GGUF (the message export gives); None: it can."""
    full_finetune_refusal: ClassVar[str | None] = None
    """Why this task trains LoRA adapters only (the message a recipe with model.full_finetune gets); None: it
    trains either way."""
    progress_fields: ClassVar[tuple[str, ...]] = ()
    """Trainer log keys shown on the progress line beside the loss (e.g. GRPO's 'reward')."""
    sequences_per_row: ClassVar[int] = 1
    """Sequences the trainer runs for one data row, so a batch of N rows holds N x this many (DPO: 2,
    the chosen and the rejected reply); `fasttune plan` and the `auto` sizes estimate memory with it."""

    @classmethod
    def from_config(cls, fields: dict) -> Task:
        """The task from its fields as config.json records them (Recipe.to_dict)."""
        return cls(**fields)

    def check_train(self, train) -> None:
        """Checks of the recipe's Train section that only this task needs (raise ConfigError); run
        by Recipe's own check, so a bad combination stops before any data or model loads."""

    # --- data, before any model loads ---
    @abstractmethod
    def check_row(self, row: dict) -> list[tuple[str, str]]:
        """One row's problems as (field, message); [] when it is fine."""

    def check_dataset(self, train_rows: list, eval_rows: list) -> list[str]:
        """Checks across rows (raise DataError); returns notes for the console. Most tasks need none."""
        return []

    @abstractmethod
    def view_row(self, row: dict, tokenizer, max_length: int) -> RowView:
        """Lengths of one validated row as the trainer will see it (`fasttune check`)."""

    @abstractmethod
    def show_row(self, row: dict, tokenizer, max_length: int) -> str:
        """One row rendered as the model sees it, the trained text inside [[ ]] (`fasttune check`)."""

    def data_figures(self, train_rows: list, eval_rows: list) -> dict:
        """Task-specific figures for `fasttune check` (class counts, tool calls, reward columns)."""
        return {}

    # --- training ---
    def setup_tokenizer(self, tokenizer, setting: str = "auto"):
        """Give the tokenizer the chat template this task trains with, from `model.chat_template`
        (`setting`); return the TemplateChoice (what config.json records, and why)."""
        from fasttune.chat_template import set_chat_template

        return set_chat_template(tokenizer, setting)

    @abstractmethod
    def datasets(self, train_rows: list, eval_rows: list, tokenizer, max_length: int):
        """(train_ds, eval_ds, {"train": PrepStats, "eval": PrepStats}) for this task's trainer, each row
        tokenized once: its PrepStats' `figures` gather every row's view (`view_row`), for the run's
        summary lines."""

    @abstractmethod
    def trainer(self, recipe, model, tokenizer, train_ds, eval_ds, hooks):
        """A TRL trainer over the datasets, built with fasttune/trainer/build.py's `build` and the
        run's `hooks` (RunHooks: where it writes, its callbacks, the token counter)."""

    def count_tokens(self, batch: dict) -> tuple[int, int]:
        """(non-padding tokens, tokens with a loss) of one training micro-batch (fasttune/trainer/throughput.py)."""
        from fasttune.trainer.throughput import count_lm_batch

        return count_lm_batch(batch)

    # --- evaluation, before and after training ---
    @abstractmethod
    def prompt(self, row: dict) -> tuple[Prompt, Reference]:
        """A held-out row as the prompt the model answers and the reference its answer is scored on."""

    def render_prompt(self, tokenizer, prompt: Prompt, enable_thinking: bool | None = None) -> str:
        """The prompt as the exact text the model continues (chat template with generation prompt);
        `enable_thinking` reaches templates with a thinking switch when it is set."""
        from fasttune.chat_template import render_prompt

        return render_prompt(tokenizer, prompt, enable_thinking)

    def predict(self, model, tokenizer, prompts: list[Prompt], references: list[Reference], cfg) -> list[str]:
        """The model's answers (it is already in inference mode): greedy generation with the training
        template, thinking on or off as `cfg.thinking` says. `references` are there for tasks whose
        answer is a choice among given candidates (DPO scores its chosen and rejected replies); a
        generating task must not look at them."""
        from fasttune.generate import generate

        enabled = {"on": True, "off": False}.get(cfg.thinking)
        return generate(model, tokenizer, [self.render_prompt(tokenizer, p, enabled) for p in prompts],
                        cfg.max_new_tokens, cfg.batch_size, raw=isinstance(prompts[0], str) if prompts else False)

    def metrics(self, predictions: list[str], references: list[Reference], eval_loss: float | None) -> dict:
        """The task's numbers from real answers (and the eval loss); {} when it has none."""
        return {}

    def write_artifacts(self, run_dir, before: dict, after: dict) -> None:
        """Task-specific files for the run folder, from the before/after measurements."""

    # --- samples.md ---
    def sample_heading(self, prompt: Prompt) -> list[str]:
        """The lines that introduce one sample: the question, and how much conversation came before."""
        if isinstance(prompt, str):
            return [one_line(prompt)]
        messages = prompt["messages"] if isinstance(prompt, dict) else prompt
        lines = [one_line(messages[-1]["content"])]
        if len(messages) > 1:
            earlier = len(messages) - 1
            lines.append(f"_(after {earlier} earlier message{'s' if earlier > 1 else ''})_")
        return lines

    def sample_answer(self, answer: str) -> str:
        """One answer as samples.md shows it."""
        return one_line(answer)

    def sample_reference(self, reference: Reference) -> str:
        return one_line(reference if isinstance(reference, str) else json.dumps(reference, ensure_ascii=False))


class SFTTask(Task):
    """Supervised fine-tuning: rows become input_ids + labels, trained with TRL's SFTTrainer."""

    packs_documents: ClassVar[bool] = False
    """True: tokenized rows are concatenated and cut into full max_seq_length rows (pre-training)."""

    @abstractmethod
    def tokenize(self, row: dict, tokenizer, max_length: int) -> dict:
        """{"input_ids", "labels" (-100 where no loss), "truncated"} for one validated row: a
        chat_template.Tokenized's `example()`, whose tokens are the row's first `max_length`."""

    def tokenized(self, row: dict, tokenizer, max_length: int) -> tuple[dict, RowView]:
        """The training example and the view of one row, from one tokenization: the whole row, then
        its first max_length tokens (all of them for packed documents, which are split, not cut)."""
        whole = self.tokenize(row, tokenizer, 10**9)
        n = len(whole["input_ids"])
        keep = n if self.packs_documents else min(n, max_length)
        ids, labels = whole["input_ids"][:keep], whole["labels"][:keep]
        view = RowView(n, sum(label != -100 for label in labels[1:]), n - keep)
        return {"input_ids": ids, "labels": labels, "truncated": keep < n}, view

    def view_row(self, row: dict, tokenizer, max_length: int) -> RowView:
        return self.tokenized(row, tokenizer, max_length)[1]

    def show_row(self, row: dict, tokenizer, max_length: int) -> str:
        example = self.tokenize(row, tokenizer, max_length)
        return marked(tokenizer, example["input_ids"], [label != -100 for label in example["labels"]])

    def datasets(self, train_rows: list, eval_rows: list, tokenizer, max_length: int):
        from fasttune.data.prepare import tokenize_rows

        train_ds, train_stats = tokenize_rows(self, train_rows, tokenizer, max_length)
        eval_ds, eval_stats = tokenize_rows(self, eval_rows, tokenizer, max_length)
        if self.packs_documents:
            from fasttune.trainer.packing import pack_documents

            train_ds, eval_ds = pack_documents(train_ds, max_length), pack_documents(eval_ds, max_length)
        return train_ds, eval_ds, {"train": train_stats, "eval": eval_stats}

    def trainer(self, recipe, model, tokenizer, train_ds, eval_ds, hooks):
        from fasttune.trainer.build import build_sft_trainer

        return build_sft_trainer(recipe, model, tokenizer, train_ds, eval_ds, hooks)


def prompt_messages(prompt: str | list[Message], system_prompt: str = "") -> list[Message]:
    """A prompt column's value (a string or chat messages) as the messages the model is asked: a string
    becomes one user turn, and `system_prompt`, when set, comes first (GRPO, DPO)."""
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + turns


def rendered_by_trl(task: Task, train_rows: list, eval_rows: list, tokenizer, max_length: int, row_of) -> tuple:
    """`Task.datasets` for rows TRL renders and truncates itself (DPO's pairs, KTO's replies): each row's
    view counted into its split's PrepStats, `row_of(data)` the dataset row TRL gets."""
    from fasttune.data.prepare import PrepStats, to_dataset

    def rows_of(rows, st: PrepStats):
        for row in rows:
            view = task.view_row(row.data, tokenizer, max_length)  # the figures are the truncated row's
            st.figures.add(view)
            st.rows, st.truncated = st.rows + 1, st.truncated + (view.cut > 0)
            st.tokens, st.trained_tokens = st.tokens + view.tokens - view.cut, st.trained_tokens + view.trained
            yield row_of(row.data)

    stats = {"train": PrepStats(), "eval": PrepStats()}
    train_ds, eval_ds = (to_dataset(rows_of(rows, stats[split]))
                         for split, rows in (("train", train_rows), ("eval", eval_rows)))
    return train_ds, eval_ds, stats


def prompt_problems(row: dict, column: str) -> list[tuple[str, str]]:
    """A prompt column that must hold a non-empty string or a list of chat messages (DPO, KTO)."""
    prompt = row.get(column)
    if column not in row:
        return [missing(row, column)]
    if isinstance(prompt, list) and prompt:
        return message_problems(column, prompt)
    if not (isinstance(prompt, str) and not blank(prompt)):
        return [(column, "must be a non-empty string or a list of messages")]
    return []


def message_problems(column: str, messages: list) -> list[tuple[str, str]]:
    """A prompt column given as a list of chat messages: each must be an object with string role and content."""
    return [(f"{column}[{i}]", "must be an object with string role and content") for i, m in enumerate(messages)
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str))]


def marked(tokenizer, ids: list[int], trained: list[bool]) -> str:
    """Decoded text with every run of trained tokens inside [[ ]]."""
    out, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or trained[i] != trained[start]:
            text = tokenizer.decode(ids[start:i])
            out.append(f"{TRAINED_OPEN}{text}{TRAINED_CLOSE}" if trained[start] else text)
            start = i
    return "".join(out)


def share(flags) -> float | None:
    """The share of true flags, to 4 places, as task metrics report it; None when there are none to count
    (e.g. no held-out row needs a tool call): a share of nothing is no number, and 0.0 would read as all wrong."""
    flags = list(flags)
    return round(sum(flags) / len(flags), 4) if flags else None


def one_line(text: str, limit: int = 400) -> str:
    """Whitespace collapsed and long text cut, for a Markdown list item."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + " …"
