"""Before and after training: eval loss, the task's metric on real model outputs, and samples.md.

The held-out prompts are also written into the run folder (eval_prompts.json, read back through
fasttune/run_folder.py), rendered exactly as the model saw them: export verification asks the GGUF
the same questions without rebuilding the recipe or re-reading the data.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fasttune import thinking
from fasttune.distributed import is_main, sharded
from fasttune.run_folder import EVAL_PROMPTS, write_json

KEPT_PROMPTS = 32  # held-out prompts kept in the run folder even when eval measures fewer
MODES = {"default": ("default",), "on": ("on",), "off": ("off",), "both": ("on", "off")}
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
        modes = MODES[self.cfg.thinking]
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

    def write_prompts(self, run_dir: Path, tokenizer) -> None:
        """eval_prompts.json: held-out prompts (the ones measured here, and at least KEPT_PROMPTS for
        export verification), each with its rendered text and its reference."""
        # thinking on where the template has the switch: what export verification asks the GGUF
        enabled = True if thinking.takes_switch(tokenizer.chat_template) else None
        write_json(run_dir / EVAL_PROMPTS, [{"prompt": p, "text": self.task.render_prompt(tokenizer, p, enabled),
                                             "reference": r} for p, r in self.kept])

    def write_samples(self, path: Path, before: dict[str, list[str]], after: dict[str, list[str]]) -> None:
        """samples.md for people, and beside it samples.json (the same rows) for the Python API; one
        before/after pair per thinking setting measured ('before (thinking off)')."""
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
        path.write_text("\n".join(lines))
        write_json(path.with_suffix(".json"), rows)
