"""`fasttune run`: one recipe, top to bottom.

    check data -> pick backend (Unsloth first) -> run folder -> model -> tokenize
    -> eval + samples before -> train -> save adapter (model/ when fully fine-tuned) -> finished
    -> eval + samples after -> export

Everything that can be wrong with the data is found before a model loads and before the run
folder exists; anything that fails after that, until the trained weights are saved, marks the folder
'failed' (or 'interrupted'). Once they are saved the training is 'finished' and stays so: the
evaluation after it and the export are steps of their own, each recorded in status.json
(`evaluation`, `export`), and one that fails or is interrupted names the command that redoes it
(`fasttune eval RUN`, `fasttune export RUN ...`).

Under `accelerate launch` or `torchrun` every process runs this function, and rank 0 alone prints
and writes (fasttune/distributed.py).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

from fasttune import backends, distributed
from fasttune.check import load_tokenizer, longest_row
from fasttune.checkpoints import find_checkpoint, latest_checkpoint
from fasttune.data.load import load_splits
from fasttune.errors import EvaluationError, ExportError, RunInterrupted, TrainingDiverged
from fasttune.evaluate import ANSWERS, SUMMARY, Evaluator, describe, evaluate_after
from fasttune.interrupts import StopGuard, sigterm_interrupts
from fasttune.plan import check_model, resolve_auto
from fasttune.recipe import Recipe
from fasttune.run_folder import RunFolder, trained_folder, write_dir, write_json
from fasttune.session import open_session, quiet_libraries
from fasttune.tracking import make_callback, one_wandb_run, plain_console, plot_loss, setup_wandb, wandb_sync_commands
from fasttune.trainer.arguments import TRAINER_ARGS, as_built
from fasttune.trainer.build import RunHooks
from fasttune.trainer.throughput import TokenCounter, gpu_peak_gib, reset_gpu_peak


def run(recipe: Recipe, console: Console | None = None, command: str = "fasttune run RECIPE") -> Path:
    """Train `recipe`; `command` is how it was started, for the resume command an interruption prints."""
    console = console or plain_console()
    if not distributed.is_main():
        console = plain_console(quiet=True)  # one set of messages, one progress bar: rank 0's
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
    checkpoint = find_checkpoint(recipe.train.resume, recipe.to_dict()) if recipe.train.resume else None
    check_model(recipe)  # from its config alone: a model that cannot load or train as asked stops here
    RunFolder.check_writable(recipe.log.runs_dir)

    # 2. Backend: Unsloth is imported here, before transformers/trl/peft.
    backend, why = backends.choose(recipe.model.backend)
    say(f"Backend: {why}")
    if distributed.launched():
        engine = distributed.engine()
        cpu = f"; on CPU accelerate runs {engine} as DDP" if distributed.on_cpu() and engine != "DDP" else ""
        say(f"Processes: {distributed.processes()} ({engine}{cpu})")
    backend.check_stack(say)
    recipe = resolve_auto(recipe, lambda: longest_row(recipe.task, train_rows, load_tokenizer(recipe.model.name, say)),
                          say)  # batch_size / max_seq_length 'auto' become numbers before config.json is written

    # 3. The run folder, marked 'running' until the trained weights are saved.
    run = RunFolder.create(recipe.log.runs_dir, recipe.name)
    if run.writes:
        write_json(run.path / "config.json", recipe.to_dict())
    run.status("running", backend=backend.NAME)
    say(f"Run folder: {run.path}")
    sigterm_interrupts()  # so status.json says it was interrupted
    with one_wandb_run():  # closed when training and its evaluation end, however they end
        try:
            session, trainer, evaluator, stop = _train(recipe, backend, run, train_rows, eval_rows, checkpoint, say,
                                                       console, command, started)
        except KeyboardInterrupt as error:  # before training started, or a second Ctrl-C during it
            run.fail(error)
            saved = latest_checkpoint(run.path)
            resume = f"Resume with: {resume_command(command, run.path)}" if saved else \
                f"Nothing was trained yet; start again with: {command}"
            raise RunInterrupted(f"{error or 'Ctrl-C'} before training finished. {resume}") from error
        except BaseException as error:
            run.fail(error)
            raise

        # 9. After: the same measurements as before training, samples, the task's files. The weights are
        # saved already, so a failure here loses no training (`fasttune eval RUN` redoes this step).
        try:
            summary = evaluate_after(run, session, trainer, evaluator, say, stop)
        except (EvaluationError, RunInterrupted) as error:
            if recipe.export.formats and run.writes:  # say what else did not happen
                raise type(error)(f"{error}\nThe recipe's export did not run; then: {export_command(recipe, run)}") \
                    from error.__cause__
            raise
    if run.writes:
        summary["wall_time_s"] = round(time.perf_counter() - started, 1)
        write_json(run.path / SUMMARY, summary)
    say(Text.assemble(("Finished", "bold green"), f" in {time.perf_counter() - started:.0f} s. Run folder: {run.path}"))
    distributed.finish()  # the other processes are done; rank 0 alone exports
    if recipe.export.formats and run.writes:  # 10. Export, as `fasttune export` would
        _export(recipe, run, say)
    return run.path


def _export(recipe: Recipe, run: RunFolder, say) -> None:
    """The recipe's own export; export/pipeline.py records it in status.json. A failure or interruption
    leaves the trained run finished, and the message names the command that tries again."""
    from fasttune.export.pipeline import export

    try:
        export(run.path, recipe.export.formats, recipe.export.quants, verify_prompts=recipe.export.verify_prompts,
               verify_tokens=recipe.export.verify_tokens, say=say)
    except Exception as error:
        retry = export_command(recipe, run, "--force")
        if isinstance(error, RunInterrupted):
            raise RunInterrupted(f"training finished and its result is intact in {run.path}, but the export was "
                                 f"interrupted.\nExport it with: {retry}") from None
        raise ExportError(f"training finished and its result is intact in {run.path}, but the export failed: {error}\n"
                          f"Try again with: {retry}") from error


def export_command(recipe: Recipe, run: RunFolder, *extra: str) -> str:
    """The `fasttune export` command that does what the recipe's export section asks, quoted for a shell."""
    export = recipe.export
    return shlex.join(["fasttune", "export", str(run.path), *(a for f in export.formats for a in ("--to", f)),
                       "--quant", ",".join(export.quants), "--verify-prompts", str(export.verify_prompts),
                       "--verify-tokens", str(export.verify_tokens), *extra])


def _train(recipe: Recipe, backend, run: RunFolder, train_rows, eval_rows, checkpoint, say, console,
           command: str, started: float):
    """Steps 4-8: model, datasets, trainer, the measurements before training, training, and the saved
    adapter (or model) with eval.json's training figures; status.json says 'finished' when this returns. Also
    returns the stop (Ctrl-C, SIGTERM) asked for while the last step or the save ran, if one was."""
    task, train = recipe.task, recipe.train

    # 4-5. Model + LoRA, or the model alone to train in full (from the checkpoint when resuming, so
    # "before" below means the checkpoint), datasets tokenized with loss masks, what truncation cut.
    session = open_session(recipe, backend, train_rows, eval_rows, say, weights=checkpoint)
    model, tokenizer = session.model, session.tokenizer
    if run.writes and recipe.model.chat_template != session.template.name:  # the template chosen, on record
        recipe.model.chat_template = session.template.name
        write_json(run.path / "config.json", recipe.to_dict())

    # 6. Trainer, trackers; tokens counted by fasttune itself, the same way on every backend.
    wandb_mode = setup_wandb(run.path, run.name, recipe.log.project) if "wandb" in recipe.log.report_to else None
    tokens = TokenCounter(task.count_tokens)
    callback = make_callback(run.path / "metrics.jsonl", console, tokens, task.progress_fields)
    guard = StopGuard(say)  # Ctrl-C / SIGTERM save a checkpoint; a non-finite loss stops the run
    trainer = session.trainer(RunHooks(run.path, run.name, [callback, guard.callback()], tokens))
    if run.writes:
        write_json(run.path / TRAINER_ARGS, as_built(trainer))

    # 7. Before training: eval loss, the task metric, sample answers.
    evaluator = Evaluator(task, eval_rows, recipe.eval)
    if run.writes:
        evaluator.write_prompts(run.path, tokenizer)  # for export verification, rendered as the model sees them
    before, before_answers = evaluator.run(trainer, backend, model, tokenizer, session.has_eval)
    say(f"Before training: {describe(before)}")
    if run.writes:
        write_json(run.path / ANSWERS, {"before": before_answers})
    distributed.let_training_wrap(model)

    # 8. Train, then save the trained weights at once: the first thing a finished training leaves.
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
        stopped_early(guard, recipe, run.path, command, trainer.state)
        saved = _save_weights(run, recipe.model.full_finetune, trainer, model, tokenizer)
    seen, trained = tokens.totals()
    # DDP keeps one copy of the trained weights on every process; their digest from each rank shows that it did
    replicas = distributed.gather(trained_sha256(model)) if distributed.launched() and not distributed.sharded() \
        else None
    metrics = result.metrics
    runtime = metrics.get("train_runtime", 0.0)
    summary = {
        "task": task.name,
        "backend": backend.NAME,
        "before": before,
        "after": None,  # filled in by the evaluation after training
        "train_loss": round(metrics.get("train_loss", float("nan")), 4),
        "steps": trainer.state.global_step,
        "processes": processes,
        "effective_batch": effective_batch(train, processes),  # rows per optimizer step, all processes
        "weights_sha256_per_rank": replicas,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "train_runtime_s": round(runtime, 1),
        "train_tokens": seen,  # non-padding tokens of the training batches, summed over the processes
        "trained_tokens": trained,  # those that carry loss
        "tokens_per_second": round(seen / runtime, 1) if runtime else None,
        "train_peak_gpu_memory_gib": peak_gib,  # torch's peak during trainer.train(), weights included
        "data": {split: split_stats.to_dict() for split, split_stats in session.stats.items()},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    if run.writes:
        write_json(run.path / SUMMARY, summary)
        plot_loss(run.path / "metrics.jsonl", run.path / "loss.png")
    run.status("finished", backend=backend.NAME, evaluation="pending")
    say(f"Training finished: {trainer.state.global_step} steps, {saved.name} saved in {saved}")
    if wandb_mode == "offline" and run.writes:
        for sync in wandb_sync_commands(run.path):
            say(f"W&B ran offline; upload later with: {sync}")
    return session, trainer, evaluator, guard.requested


def effective_batch(train, processes: int) -> int:
    """Rows per optimizer step: batch_size is per process, as in TrainingArguments, so a step of N
    processes sees N times the rows; max_steps and the learning-rate schedule count these steps."""
    return train.batch_size * train.grad_accum * processes


def stopped_early(guard: StopGuard, recipe: Recipe, run_dir: Path, command: str, state) -> None:
    """Raise what a training loop that stopped before its end means: divergence or an interruption.
    A stop asked for during the last step is no interruption: every step ran (`state`, the Trainer's)."""
    saved = latest_checkpoint(run_dir)
    if guard.nonfinite:
        step, key, value = guard.nonfinite
        again = shlex.join(part for part in shlex.split(command) if not part.startswith("train.lr="))
        last = (f"The last good checkpoint is {saved}; resume from it with a lower learning rate: "
                f"{resume_command(again, saved, f'train.lr={recipe.train.lr / 10:g}')}") if saved else \
            "No checkpoint was saved before it (train.save_steps writes them)."
        raise TrainingDiverged(
            f"{key} became {value} at step {step}. Likely causes: a learning rate too high for this model "
            f"(train.lr={recipe.train.lr:g}), fp16 overflow (model.dtype=bfloat16 or float32 avoids it), or "
            f"broken rows in the data (fasttune check shows them). The weights of that step were not saved. {last}")
    if guard.requested and state.global_step < state.max_steps:
        raise RunInterrupted(f"{guard.requested} during training: checkpoint saved at {saved}.\n"
                             f"Resume with: {resume_command(command, run_dir)}")


def resume_command(command: str, resume: Path, *overrides: str) -> str:
    """`command` (a shell command already quoted) with `overrides` and train.resume=`resume` appended,
    each quoted: a path with a space, `;` or `$(...)` stays one argument when the line is pasted."""
    return " ".join([command, *map(shlex.quote, [*overrides, f"train.resume={resume}"])])


def trained_sha256(model) -> str:
    """The digest of the trained weights this process holds: the LoRA weights, named as
    adapter_model.safetensors names them, or every weight of a fully fine-tuned model."""
    if not hasattr(model, "peft_config"):
        return distributed.weights_sha256(model.state_dict())
    from peft import get_peft_model_state_dict

    return distributed.weights_sha256(get_peft_model_state_dict(model))


def _save_weights(run: RunFolder, full_finetune: bool, trainer, model, tokenizer) -> Path:
    """adapter/ (model/ when fully fine-tuned) with the tokenizer and chat template; returns its path. The
    sharded engines spread the weights over the processes: all of them gather them through
    Trainer.save_model and rank 0 writes; otherwise rank 0 saves them from the model."""
    target = run.path / trained_folder(full_finetune)
    gathered = run.path / ".weights.gathered"
    if distributed.sharded():
        trainer.save_model(str(gathered))
    if not run.writes:
        return target

    def build(folder: Path) -> None:
        if gathered.is_dir():
            gathered.rename(folder)
        else:
            model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    write_dir(target, build)
    return target
