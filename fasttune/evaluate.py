"""Before and after training: eval loss, the task's metric on real model outputs, and samples.md."""

from __future__ import annotations

import json
from pathlib import Path


class Evaluator:
    """Holds the held-out prompts so 'before' and 'after' are measured on exactly the same ones."""

    def __init__(self, task, eval_rows: list, cfg):
        self.task, self.cfg = task, cfg
        wanted = len(eval_rows) if not task.scores_outputs or cfg.metric_rows == 0 else cfg.metric_rows
        count = max(wanted, cfg.samples) if task.scores_outputs else cfg.samples
        pairs = [task.prompt(r.data) for r in eval_rows[:count]]
        self.prompts = [p for p, _ in pairs]
        self.references = [r for _, r in pairs]

    def run(self, trainer, backend, model, tokenizer, has_eval: bool) -> tuple[dict, list[str]]:
        """{eval_loss, **task metrics} and the predictions, from the model as it is now."""
        loss = round(trainer.evaluate()["eval_loss"], 4) if has_eval else None
        predictions = []
        if self.prompts:
            backend.for_inference(model)
            try:
                predictions = self.task.predict(model, tokenizer, self.prompts, self.cfg)
            finally:
                backend.for_training(model)
        metrics = self.task.metrics(predictions, self.references, loss)
        return {"eval_loss": loss, **metrics}, predictions

    def write_samples(self, path: Path, before: list[str], after: list[str]) -> None:
        n = self.cfg.samples
        lines = ["# Samples: held-out prompts, answered before and after training", ""]
        for i, (prompt, ref, b, a) in enumerate(zip(self.prompts[:n], self.references, before, after), start=1):
            if isinstance(prompt, dict):  # function calling: messages + tools
                prompt = prompt["messages"]
            if isinstance(prompt, str):
                lines.append(f"## {i}. {_one_line(prompt)}")
            else:
                lines.append(f"## {i}. {_one_line(prompt[-1]['content'])}")
                if len(prompt) > 1:
                    earlier = len(prompt) - 1
                    lines.append(f"_(after {earlier} earlier message{'s' if earlier > 1 else ''})_")
            if isinstance(ref, dict):  # GRPO: the columns the rewards see
                ref = json.dumps({k: v for k, v in ref.items() if k != "prompt"}, ensure_ascii=False)
            lines += ["", f"- **before:** {_one_line(b)}", f"- **after:** {_one_line(a)}",
                      f"- **reference:** {_one_line(ref)}", ""]
        path.write_text("\n".join(lines))


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " …"
