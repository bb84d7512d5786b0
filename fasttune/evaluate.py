"""Before and after training: eval loss, the task's metric on real model outputs, and samples.md.

The held-out prompts are also written into the run folder (eval_prompts.json, read back through
fasttune/run_folder.py), rendered exactly as the model saw them: export verification asks the GGUF
the same questions without rebuilding the recipe or re-reading the data.
"""

from __future__ import annotations

from pathlib import Path

from fasttune.distributed import is_main, sharded
from fasttune.run_folder import EVAL_PROMPTS, write_json

KEPT_PROMPTS = 32  # held-out prompts kept in the run folder even when eval measures fewer


class Evaluator:
    """Holds the held-out prompts so 'before' and 'after' are measured on exactly the same ones."""

    def __init__(self, task, eval_rows: list, cfg):
        self.task, self.cfg = task, cfg
        wanted = len(eval_rows) if not task.scores_outputs or cfg.metric_rows == 0 else cfg.metric_rows
        count = max(wanted, cfg.samples) if task.scores_outputs else cfg.samples
        self.kept = [task.prompt(r.data) for r in eval_rows[:max(count, KEPT_PROMPTS)]]  # eval_prompts.json
        self.prompts = [p for p, _ in self.kept[:count]]
        self.references = [r for _, r in self.kept[:count]]

    def run(self, trainer, backend, model, tokenizer, has_eval: bool) -> tuple[dict, list[str]]:
        """{eval_loss, **task metrics} and the predictions, from the model as it is now."""
        loss = round(trainer.evaluate()["eval_loss"], 4) if has_eval else None  # every process takes part
        if not is_main() and not sharded():  # samples and the task metric: once, on rank 0
            return {"eval_loss": loss}, []
        predictions = []
        if self.prompts:
            backend.for_inference(model)
            try:
                predictions = self.task.predict(model, tokenizer, self.prompts, self.references, self.cfg)
            finally:
                backend.for_training(model)
        metrics = self.task.metrics(predictions, self.references, loss)
        return {"eval_loss": loss, **metrics}, predictions

    def write_prompts(self, run_dir: Path, tokenizer) -> None:
        """eval_prompts.json: held-out prompts (the ones measured here, and at least KEPT_PROMPTS for
        export verification), each with its rendered text and its reference."""
        write_json(run_dir / EVAL_PROMPTS, [{"prompt": p, "text": self.task.render_prompt(tokenizer, p), "reference": r}
                                            for p, r in self.kept])

    def write_samples(self, path: Path, before: list[str], after: list[str]) -> None:
        """samples.md for people, and beside it samples.json (the same rows) for the Python API."""
        n = self.cfg.samples
        lines = ["# Samples: held-out prompts, answered before and after training", ""]
        rows = []
        for i, (prompt, ref, b, a) in enumerate(zip(self.prompts[:n], self.references, before, after), start=1):
            heading, *notes = self.task.sample_heading(prompt)
            answers = {"before": self.task.sample_answer(b), "after": self.task.sample_answer(a),
                       "reference": self.task.sample_reference(ref)}
            lines += [f"## {i}. {heading}", *notes, ""]
            lines += [f"- **{key}:** {value}" for key, value in answers.items()] + [""]
            rows.append({"prompt": heading, **answers})
        path.write_text("\n".join(lines))
        write_json(path.with_suffix(".json"), rows)
