"""`fasttune run`: one recipe, top to bottom.

    check data -> pick backend (Unsloth first) -> run folder -> model -> tokenize
    -> eval + samples before -> train -> eval + samples after -> save adapter -> finished -> export

Everything that can be wrong with the data is found before a model loads and before the run
folder exists; anything that fails after that marks the folder 'failed'. Training is marked
'finished' before an export starts: an export that fails is reported as an export failure (and
in status.json), and the trained run stays usable for `fasttune export` to try again.

Under `accelerate launch` or `torchrun` every process runs this function, and rank 0 alone prints
and writes (fasttune/distributed.py).
"""

from __future__ import annotations

import os
import shlex
import signal
import time
import traceback
import warnings
from pathlib import Path

from rich.console import Console

from fasttune import backends, distributed, models
from fasttune.backends.quantization import use_4bit
from fasttune.check import load_tokenizer, longest_row
from fasttune.data.load import load_splits
from fasttune.errors import ConfigError, DataError, ExportError, Problem, RunInterrupted, TrainingDiverged
from fasttune.interrupts import StopGuard
from fasttune.plan import resolve_auto
from fasttune.profiles import warn_unsloth_stack_once
from fasttune.recipe import Recipe
from fasttune.run_folder import RunFolder, find_checkpoint, latest_checkpoint, write_dir, write_json
from fasttune.throughput import TokenCounter, gpu_peak_gib, reset_gpu_peak
from fasttune.tracking import make_callback, plot_loss, setup_wandb, wandb_offline_dirs


def run(recipe: Recipe, console: Console | None = None, command: str = "fasttune run RECIPE") -> Path:
    """Train `recipe`; `command` is how it was started, for the resume command an interruption prints."""
    console = console or Console(soft_wrap=True)  # paths stay whole, copy-pastable
    if not distributed.is_main():
        console = Console(quiet=True)  # one set of messages, one progress bar: rank 0's
    say = console.print
    quiet_libraries()
    started = time.perf_counter()

    # 1. Data, checked in full before anything heavy happens.
    train_rows, eval_rows = load_splits(recipe.data, recipe.task.check_row, recipe.train.seed)
    notes = recipe.task.check_dataset(train_rows, eval_rows)
    eval_from = recipe.data.eval if isinstance(recipe.data.eval, str) else f"{recipe.data.eval:.0%} of the train file"
    say(f"Data ({recipe.task.name}): {len(train_rows)} train rows from {recipe.data.path}, "
        f"{len(eval_rows)} eval rows from {eval_from}")
    for note in notes:
        say(note)
    checkpoint = find_checkpoint(recipe.train.resume) if recipe.train.resume else None
    RunFolder.check_writable(recipe.log.runs_dir)

    # 2. Backend: Unsloth is imported here, before transformers/trl/peft.
    backend, why = backends.choose(recipe.model.backend)
    say(f"Backend: {why}")
    if distributed.launched():
        engine = distributed.engine()
        cpu = f"; on CPU accelerate runs {engine} as DDP" if distributed.on_cpu() and engine != "DDP" else ""
        say(f"Processes: {distributed.processes()} ({engine}{cpu})")
    if backend.NAME == "unsloth":
        import torch

        warn_unsloth_stack_once(torch.cuda.is_available(), say)
    recipe = resolve_auto(recipe, lambda: longest_row(recipe.task, train_rows, load_tokenizer(recipe.model.name, say)),
                          say)  # batch_size / max_seq_length 'auto' become numbers before config.json is written

    # 3. The run folder, marked 'running' until the very end.
    run = RunFolder.create(recipe.log.runs_dir, recipe.name)
    if run.writes:
        write_json(run.path / "config.json", recipe.to_dict())
    run.status("running", backend=backend.NAME)
    say(f"Run folder: {run.path}")
    # `kill` (SIGTERM) ends the run like Ctrl-C does, so status.json says it was interrupted
    signal.signal(signal.SIGTERM, _terminated)
    try:
        summary = _train(recipe, backend, run, train_rows, eval_rows, checkpoint, say, console, command)
        summary["wall_time_s"] = round(time.perf_counter() - started, 1)
        if run.writes:
            write_json(run.path / "eval.json", summary)
    except BaseException as error:
        run.fail(error)
        raise
    run.status("finished", backend=backend.NAME)
    say(f"[bold green]Finished[/] training in {summary['wall_time_s']:.0f} s. Run folder: {run.path}")
    distributed.finish()  # the other processes are done; rank 0 alone exports
    if recipe.export.formats and run.writes:  # 10. Export, as `fasttune export` would
        _export(recipe, run, backend.NAME, say)
    return run.path


def _export(recipe: Recipe, run: RunFolder, backend: str, say) -> None:
    from fasttune.export.pipeline import export

    run.status("finished", backend=backend, export="running")
    try:
        export(run.path, recipe.export.formats, recipe.export.quants, verify_prompts=recipe.export.verify_prompts,
               verify_tokens=recipe.export.verify_tokens, progress=say)
    except BaseException as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        run.status("finished", backend=backend, export="interrupted" if interrupted else "failed",
                   export_error=f"{type(error).__name__}: {error}",
                   export_traceback="".join(traceback.format_exception(error))[-4000:])
        if not isinstance(error, Exception):
            raise
        retry = " ".join(f"--to {f}" for f in recipe.export.formats) + f" --quant {','.join(recipe.export.quants)}"
        raise ExportError(f"training finished and its result is intact in {run.path}, but the export failed: {error}\n"
                          f"Try again with: fasttune export {run.path} {retry} --force") from error
    run.status("finished", backend=backend, export="done")


def _train(recipe: Recipe, backend, run: RunFolder, train_rows, eval_rows, checkpoint, say, console,
           command: str) -> dict:
    task, data, train = recipe.task, recipe.data, recipe.train

    # 4. Model + LoRA.
    path = models.resolve(recipe.model.name, say)
    if recipe.model.load_in_4bit and not use_4bit(recipe.model):
        say("model.load_in_4bit applies on CUDA only: loading the base unquantized on this machine")
    try:
        model, tokenizer = backend.load(recipe.model, path, data.max_seq_length, train.gradient_checkpointing,
                                        train.seed)
    except OSError as error:  # what from_pretrained raises for a missing or unreachable model
        raise ConfigError(models.load_failure(recipe.model.name, error)) from error
    say(f"Model: {recipe.model.name} ({path}), chat template: {task.setup_tokenizer(tokenizer)}")

    # 5. Datasets (tokenized with loss masks for SFT); report what truncation cut.
    train_ds, eval_ds, stats = task.datasets(train_rows, eval_rows, tokenizer, data.max_seq_length)
    from fasttune.check import figures, summary_line

    for split, fig in figures(task, {"train": train_rows, "eval": eval_rows}, tokenizer, data.max_seq_length).items():
        say(summary_line(split, fig))  # the first lines of `fasttune check`
        if stats[split].dropped:
            say(f"  {stats[split].dropped} {split} rows dropped: nothing left to train on within the length limits")
    if stats["train"].rows == 0:
        raise DataError([Problem(data.path, "", "no row left to train on after truncation; raise data.max_seq_length")])

    if checkpoint:  # so "before" below means the checkpoint, not a fresh adapter
        _load_adapter_weights(model, checkpoint)

    # 6. Trainer, trackers; tokens counted by fasttune itself, the same way on every backend.
    wandb_mode = setup_wandb(run.path, run.name, recipe.log.project) if "wandb" in recipe.log.report_to else None
    tokens = TokenCounter(task.count_tokens)
    callback = make_callback(run.path / "metrics.jsonl", console, tokens, task.progress_fields)
    guard = StopGuard(say)  # Ctrl-C / SIGTERM save a checkpoint; a non-finite loss stops the run
    callbacks = [callback, guard.callback()]
    trainer = task.trainer(recipe, model, tokenizer, train_ds, eval_ds, run.path, run.name, callbacks)
    tokens.attach(trainer)

    # 7. Before training: eval loss, the task metric, sample answers.
    from fasttune.evaluate import Evaluator

    evaluator = Evaluator(task, eval_rows, recipe.eval)
    if run.writes:
        evaluator.write_prompts(run.path, tokenizer)  # for export verification, rendered as the model sees them
    has_eval = task.has_eval_loss and len(eval_ds) > 0
    before, before_answers = evaluator.run(trainer, backend, model, tokenizer, has_eval)
    say(f"Before training: {_fmt(before)}")
    distributed.let_training_wrap(model)

    # 8. Train.
    processes = distributed.processes()
    say(f"Training: {trainer.args.max_steps if trainer.args.max_steps > 0 else f'{train.epochs} epochs of'} steps, "
        f"batch {train.batch_size} x {train.grad_accum}" + (f" x {processes} processes" if processes > 1 else "")
        + f" = {effective_batch(train, processes)} rows per step, lr {train.lr}")
    if checkpoint:
        say(f"Resuming from {checkpoint}")
    reset_gpu_peak()
    with guard.signals():
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    peak_gib = gpu_peak_gib()
    stopped_early(guard, recipe, run.path, command)

    # 9. After: the same measurements, then samples, adapter, plots.
    after, after_answers = evaluator.run(trainer, backend, model, tokenizer, has_eval)
    say(f"After training:  {_fmt(after)}")
    seen, trained = tokens.totals()
    # DDP keeps one adapter on every process; its digest from each rank shows that it did
    replicas = distributed.gather(adapter_sha256(model)) if distributed.launched() and not distributed.sharded() \
        else None
    gathered = run.path / ".adapter.gathered"
    if distributed.sharded():  # the adapter is spread over the processes: all of them gather it, rank 0 writes
        trainer.save_model(str(gathered))
    if run.writes:
        evaluator.write_samples(run.path / "samples.md", before_answers, after_answers)
        task.write_artifacts(run.path, before, after)
        write_dir(run.path / "adapter", lambda tmp: _save_adapter(tmp, model, tokenizer, gathered))
        plot_loss(run.path / "metrics.jsonl", run.path / "loss.png")
    if wandb_mode == "offline" and run.writes:
        for folder in wandb_offline_dirs(run.path):
            say(f"W&B ran offline; upload later with: wandb sync {folder}")

    metrics = result.metrics
    runtime = metrics.get("train_runtime", 0.0)
    return {
        "task": task.name,
        "backend": backend.NAME,
        "before": before,
        "after": after,
        "train_loss": round(metrics.get("train_loss", float("nan")), 4),
        "steps": trainer.state.global_step,
        "processes": processes,
        "effective_batch": effective_batch(train, processes),  # rows per optimizer step, all processes
        "adapter_sha256_per_rank": replicas,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "train_runtime_s": round(runtime, 1),
        "train_tokens": seen,  # non-padding tokens of the training batches, summed over the processes
        "trained_tokens": trained,  # those that carry loss
        "tokens_per_second": round(seen / runtime, 1) if runtime else None,
        "train_peak_gpu_memory_gib": peak_gib,  # torch's peak during trainer.train(), weights included
        "data": {split: split_stats.to_dict() for split, split_stats in stats.items()},
    }


def effective_batch(train, processes: int) -> int:
    """Rows per optimizer step: batch_size is per process, as in TrainingArguments, so a step of N
    processes sees N times the rows; max_steps and the learning-rate schedule count these steps."""
    return train.batch_size * train.grad_accum * processes


def _fmt(measured: dict, prefix: str = "") -> str:
    """The numbers in a measurement (one level of nesting, e.g. rewards.answer_match), for one line."""
    parts = []
    for key, value in measured.items():
        if isinstance(value, dict) and not prefix:
            inner = _fmt(value, f"{key}.")
            parts += [inner] if inner else []
        elif isinstance(value, float):
            parts.append(f"{prefix}{key} {value:.4g}")
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{prefix}{key} {value}")
    return ", ".join(parts)


def stopped_early(guard: StopGuard, recipe: Recipe, run_dir: Path, command: str) -> None:
    """Raise what a training loop that stopped before its end means: divergence or an interruption."""
    saved = latest_checkpoint(run_dir)
    if guard.nonfinite:
        step, key, value = guard.nonfinite
        again = shlex.join(part for part in shlex.split(command) if not part.startswith("train.lr="))
        last = (f"The last good checkpoint is {saved}; resume from it with a lower learning rate: "
                f"{again} train.lr={recipe.train.lr / 10:g} train.resume={saved}") if saved else \
            "No checkpoint was saved before it (train.save_steps writes them)."
        raise TrainingDiverged(
            f"{key} became {value} at step {step}. Likely causes: a learning rate too high for this model "
            f"(train.lr={recipe.train.lr:g}), fp16 overflow (model.dtype=bfloat16 or float32 avoids it), or "
            f"broken rows in the data (fasttune check shows them). The weights of that step were not saved. {last}")
    if guard.requested:
        raise RunInterrupted(f"{guard.requested} during training: checkpoint saved at {saved}.\n"
                             f"Resume with: {command} train.resume={run_dir}")


def _terminated(signum, frame):
    raise KeyboardInterrupt("terminated (SIGTERM)")


def quiet_libraries() -> None:
    """Drop library chatter that says nothing to a user: deprecation FutureWarnings raised inside
    transformers/Unsloth, and datasets' bars for sub-second steps fasttune summarises itself."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def adapter_sha256(model) -> str:
    """The digest of the LoRA weights this process holds, named as adapter_model.safetensors names them."""
    from peft import get_peft_model_state_dict

    return distributed.weights_sha256(get_peft_model_state_dict(model))


def _save_adapter(folder: Path, model, tokenizer, gathered: Path) -> None:
    """The adapter as the sharded engines' Trainer.save_model gathered it, else from the model itself."""
    if gathered.is_dir():
        gathered.rename(folder)
    else:
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _load_adapter_weights(model, checkpoint: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(checkpoint / "adapter_model.safetensors"))
