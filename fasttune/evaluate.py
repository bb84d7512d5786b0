"""Before and after training: eval loss, the task's metric on real model outputs, and samples.md.

The held-out prompts are also written into the run folder (eval_prompts.json, read back through
fasttune/run_folder.py), rendered exactly as the model saw them: export verification asks the GGUF
the same questions without rebuilding the recipe or re-reading the data.

The evaluation after training runs once the adapter is saved (`evaluate_after`): when it fails or is
interrupted the training is kept, status.json says so, and `fasttune eval RUN` (`evaluate_run`)
redoes it from the run folder.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

from fasttune import thinking
from fasttune.distributed import is_main, sharded
from fasttune.errors import EvaluationError, RunInterrupted
from fasttune.run_folder import EVAL_PROMPTS, RunFolder, trained_folder, write_json, write_text

SUMMARY, ANSWERS = "eval.json", "answers.json"

HELD_OUT_RISE = 0.5
"""Nats the held-out loss may rise over training before the run says it made the model worse. The loss
is a mean log-probability, so a rise in nats is a ratio: +0.5 means each held-out token is on average
1.65x less likely than before training, whatever the model or task. Before and after are measured on
the same rows, so noise is far smaller than that; fine-tuning that works lowers the loss, and
overfitting a small data set lifts it from its lowest point, rarely above the untrained model's."""
RUNAWAY = 2.0
"""How many times its start the training loss may end at. One batch's loss varies with its rows, so
the first and last few logged losses are averaged (RUN_WINDOW); a run that learns ends lower."""
RUN_WINDOW = 3

KEPT_PROMPTS = 32  # held-out prompts kept in the run folder even when eval measures fewer
THINKING_PASSES = {"default": ("default",), "on": ("on",), "off": ("off",), "both": ("on", "off")}
"""eval.thinking -> the thinking settings answers are generated with, each measured on its own."""


class Evaluator:
    """Holds the held-out prompts so 'before' and 'after' are measured on exactly the same ones."""

    def __init__(self, task, eval_rows: list, cfg):
        self.task, self.cfg = task, cfg
        wanted = len(eval_rows) if not task.scores_outputs or cfg.metric_rows == 0 else cfg.metric_rows
        count = max(wanted, cfg.samples) if task.scores_outputs else cfg.samples
        self.kept = [task.prompt(r.data) for r in eval_rows[:max(count, KEPT_PROMPTS)]]  # eval_prompts.json
        self.prompts = [p for p, _ in self.kept[:count]]
        self.references = [r for _, r in self.kept[:count]]

    def run(self, trainer, backend, model, tokenizer, has_eval: bool) -> tuple[dict, dict[str, list[str]]]:
        """{eval_loss, **task metrics} and the predictions per thinking setting, from the model as it is
        now. With eval.thinking=both the metrics are nested under thinking_on and thinking_off."""
        modes = THINKING_PASSES[self.cfg.thinking]
        if modes != ("default",):
            thinking.require_switch(tokenizer.chat_template, True, f"eval.thinking={self.cfg.thinking}")
        loss = round(trainer.evaluate()["eval_loss"], 4) if has_eval else None  # every process takes part
        predictions = {mode: [] for mode in modes}
        if not is_main() and not sharded():  # samples and the task metric: once, on rank 0
            return {"eval_loss": loss}, predictions
        if self.prompts:
            backend.for_inference(model)
            try:
                for mode in modes:
                    predictions[mode] = self.task.predict(model, tokenizer, self.prompts, self.references,
                                                          replace(self.cfg, thinking=mode))
            finally:
                backend.for_training(model)
        measured = {mode: self.task.metrics(predictions[mode], self.references, loss) for mode in modes}
        if len(modes) == 1:
            return {"eval_loss": loss, **measured[modes[0]]}, predictions
        return {"eval_loss": loss, **{f"thinking_{mode}": measured[mode] for mode in modes}}, predictions

    def drift(self, backend, model, tokenizer) -> dict | None:
        """eval.drift's figures (fasttune/drift.py) with the examples samples.md shows, where the answers
        are generated (rank 0, or every process of a sharded engine); None when off or not here."""
        if not self.cfg.drift or (not is_main() and not sharded()):
            return None
        from fasttune import drift

        backend.for_inference(model)
        try:
            return drift.measure(model, tokenizer, self.task, self.cfg, drift.PROMPTS[:self.cfg.drift_prompts])
        finally:
            backend.for_training(model)

    def write_prompts(self, run_dir: Path, tokenizer) -> None:
        """eval_prompts.json: held-out prompts (the ones measured here, and at least KEPT_PROMPTS for
        export verification), each with its rendered text and its reference."""
        # thinking on where the template has the switch: what export verification asks the GGUF
        enabled = True if thinking.takes_switch(tokenizer.chat_template) else None
        write_json(run_dir / EVAL_PROMPTS, [{"prompt": p, "text": self.task.render_prompt(tokenizer, p, enabled),
                                             "reference": r} for p, r in self.kept])

    def write_samples(self, path: Path, before: dict[str, list[str]], after: dict[str, list[str]],
                      drift: dict | None = None) -> None:
        """samples.md for people, and beside it samples.json (the same rows) for the Python API; one
        before/after pair per thinking setting measured ('before (thinking off)'). samples.md ends with
        a few of eval.drift's general prompts, answered by the base and the tuned model."""
        n = self.cfg.samples
        lines = ["# Samples: held-out prompts, answered before and after training", ""]
        rows = []
        for i, (prompt, ref) in enumerate(zip(self.prompts[:n], self.references), start=1):
            heading, *notes = self.task.sample_heading(prompt)
            answers = {}
            for mode in before:
                label = "" if mode == "default" else f" (thinking {mode})"
                answers[f"before{label}"] = self.task.sample_answer(before[mode][i - 1])
                answers[f"after{label}"] = self.task.sample_answer(after[mode][i - 1])
            answers["reference"] = self.task.sample_reference(ref)
            lines += [f"## {i}. {heading}", *notes, ""]
            lines += [f"- **{key}:** {value}" for key, value in answers.items()] + [""]
            rows.append({"prompt": heading, **answers})
        if drift:
            from fasttune.drift import samples_section

            lines += samples_section(drift)
        write_text(path, "\n".join(lines))
        write_json(path.with_suffix(".json"), rows)


def describe(measured: dict, prefix: str = "") -> str:
    """The numbers in a measurement (one level of nesting, e.g. rewards.answer_match), for one line."""
    parts = []
    for key, value in measured.items():
        if isinstance(value, dict) and not prefix:
            inner = describe(value, f"{key}.")
            parts += [inner] if inner else []
        elif isinstance(value, float):
            parts.append(f"{prefix}{key} {value:.4g}")
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{prefix}{key} {value}")
    return ", ".join(parts)


def evaluate_after(run: RunFolder, session, trainer, evaluator: Evaluator, say, stop: str | None = None) -> dict:
    """Measure the trained model as `before` was measured, then write eval.json's `after`, samples.md /
    samples.json, the task's files and loss.png. Runs after the adapter is saved: an error or an
    interruption here (`stop`: one asked for while the adapter was being saved) is recorded in
    status.json as the evaluation's, and the message names the command that redoes it. Returns the
    completed eval.json."""
    run.step("evaluation", "running")
    found = None
    try:
        if stop:
            raise KeyboardInterrupt(stop)
        after, after_answers = evaluator.run(trainer, session.backend, session.model, session.tokenizer,
                                             session.has_eval)
        say(f"After training:  {describe(after)}")
        drift = evaluator.drift(session.backend, session.model, session.tokenizer)
        if drift:
            from fasttune.drift import summary_line

            say(summary_line(drift))
        if run.writes:
            from fasttune.tracking import plot_loss, read_metrics

            summary = json.loads((run.path / SUMMARY).read_text())
            # a task without a held-out loss (GRPO) logs a policy objective, not a likelihood: not compared
            losses = [r["loss"] for r in read_metrics(run.path / "metrics.jsonl") if "loss" in r]
            found = divergence(summary["before"].get("eval_loss"), after.get("eval_loss"),
                               losses if session.recipe.task.has_eval_loss else [])
            if found:
                say(divergence_warning(found, session.recipe.train))
            answers = json.loads((run.path / ANSWERS).read_text())
            evaluator.write_samples(run.path / "samples.md", answers["before"], after_answers, drift)
            session.recipe.task.write_artifacts(run.path, summary["before"], after)
            plot_loss(run.path / "metrics.jsonl", run.path / "loss.png")
            write_json(run.path / ANSWERS, {**answers, "after": after_answers})
            figures = {k: v for k, v in drift.items() if k != "examples"} if drift else None
            summary.update(after=after, drift=figures, diverged=bool(found), divergence=found)
            write_json(run.path / SUMMARY, summary)
    except BaseException as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        run.step("evaluation", "interrupted" if interrupted else "failed", error)
        what = "was interrupted" if interrupted else f"failed: {type(error).__name__}: {error}"
        saved = run.path / trained_folder(session.recipe.model.full_finetune)
        message = (f"training finished and its weights are saved in {saved}, but the evaluation "
                   f"after training {what}.\nRedo it with: {shlex.join(['fasttune', 'eval', str(run.path)])}")
        raise (RunInterrupted if interrupted else EvaluationError)(message) from error
    run.step("evaluation", "done", diverged=bool(found), divergence=found)
    return summary if run.writes else {"after": after}


def divergence(before: float | None, after: float | None, losses: list[float]) -> dict | None:
    """The figures that say training made the model worse, or None: the held-out loss `after` training
    more than HELD_OUT_RISE nats above `before`, or the logged training `losses` ending more than
    RUNAWAY times where they started. A loss that stays finite does not stop the run (a non-finite one
    does: fasttune/interrupts.py), so this is what tells a run that trained into nonsense from one that
    learnt."""
    found = {}
    if before is not None and after is not None and after - before > HELD_OUT_RISE:
        found["eval_loss"] = {"before": before, "after": after}
    window = min(RUN_WINDOW, len(losses) // 2)
    if window:
        first, last = (round(sum(part) / window, 4) for part in (losses[:window], losses[-window:]))
        if first > 0 and last > RUNAWAY * first:
            found["train_loss"] = {"first": first, "last": last, "averaged_over": window}
    return found or None


def divergence_warning(found: dict, train) -> str:
    """The warning a run that made its model worse prints: the figures and the usual causes."""
    figures = []
    if "eval_loss" in found:
        b, a = found["eval_loss"]["before"], found["eval_loss"]["after"]
        figures.append(f"held-out eval loss {b:.4g} before training, {a:.4g} after (+{a - b:.2f} nats)")
    if "train_loss" in found:
        f, last = found["train_loss"]["first"], found["train_loss"]["last"]
        figures.append(f"training loss {f:.4g} at the start, {last:.4g} at the end ({last / f:.1f}x)")
    return (f"Warning: training made the model worse: {'; '.join(figures)}. Usual causes: a learning rate too "
            f"high for this model (train.lr={train.lr:g}; try {train.lr / 10:g}), broken or mislabelled rows "
            "(`fasttune check` shows the data as the model sees it), or fp16 overflow (model.dtype=bfloat16 or "
            "float32 avoids it). The run is kept as finished; eval.json and status.json say diverged: true.")


def evaluate_run(run_dir: Path, say=print) -> dict:
    """`fasttune eval RUN`: the evaluation after training, redone from a finished run folder (its recipe
    from config.json, its data split as it was, the saved adapter on the backend it trained with)."""
    from fasttune import backends
    from fasttune.data.load import load_splits
    from fasttune.interrupts import sigterm_interrupts
    from fasttune.recipe import Recipe
    from fasttune.run_folder import open_run
    from fasttune.session import open_session, quiet_libraries

    sigterm_interrupts()
    quiet_libraries()
    finished = open_run(run_dir)
    for name in (SUMMARY, ANSWERS):
        if not (finished.path / name).is_file():
            raise EvaluationError(f"{finished.path}: no {name}, so there is no measurement before training to "
                                  "compare with (the run stopped before it, or was written by an older fasttune)")
    recipe = Recipe.from_dict(finished.config)
    recipe.log.report_to = []  # re-measuring adds nothing to the run's W&B record
    train_rows, eval_rows = load_splits(recipe.data, recipe.task.check_row, recipe.train.seed)
    backend, why = backends.choose(finished.status.get("backend", recipe.model.backend))
    say(f"Backend: {why}")
    session = open_session(recipe, backend, train_rows, eval_rows, say, weights=finished.weights)
    run = RunFolder(finished.path)
    from fasttune.trainer.build import RunHooks

    return evaluate_after(run, session, session.trainer(RunHooks(run.path, run.name)),
                          Evaluator(recipe.task, eval_rows, recipe.eval), say)
