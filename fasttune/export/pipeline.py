"""`fasttune export RUN_DIR --to adapter|merged|gguf`: the trained model in the forms other tools load.

    adapter -> RUN/export/adapter/            LoRA weights + tokenizer + chat template (LoRA runs only)
    merged  -> RUN/export/merged/             16-bit HF folder (fasttune/export/merged.py): base + adapter,
                                              or a fully fine-tuned run's own weights
    gguf    -> RUN/export/model-<quant>.gguf  + <name>.Modelfile for Ollama (fasttune/export/gguf.py)

Each GGUF and its Modelfile must render a fixed set of conversations to the token ids training gave
(fasttune/export/conformance.py, export.json's `template_conformance`), or they are removed and the
export fails with the first difference.

The formats and quantizations are the table in fasttune/export/formats.py; WRITERS below holds one
function per format. The export reads the run folder only (fasttune/run_folder.py).

Nothing is compiled: the GGUF is written by llama.cpp's own converter (fasttune/export/gguf.py) and
k-quants come from the llama.cpp quantizer inside llama-cpp-python. Each GGUF is then checked: llama.cpp's greedy
answers to the run's held-out prompts are compared token by token with the merged HF model's, and
the agreement goes into export.json. Every output is written under a temporary name and renamed,
and an existing output is an error unless `force` is set; `force` replaces only outputs that
export.json records (fasttune's own), never a file or folder someone else put there.

export.json (`Ledger`) keeps every export's records: `exports` holds the newest export's, in the
table's order, and `history` the earlier ones', oldest first, each with its run. A record is added
as soon as its output is in place, so even an export that fails halfway leaves a true account.

One export per run folder at a time (a lock file, RUN/.export.lock), and per output folder when --out
lies outside the run (.NAME.export.lock beside it: two runs exported into one folder): a second one,
e.g. a manual export while the recipe's own export runs, is refused at once rather than made to wait. Waiting
would hold a shell or notebook cell for the minutes a merge and a GGUF check take, and then either
refuse the outputs the first export just wrote or, with --force, replace them: neither is what
starting both at once meant, so the message says to run it again once the first is done.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from fasttune.errors import ExportError, RunInterrupted
from fasttune.export.formats import FORMATS, NO_ADAPTER, check
from fasttune.export.gguf import write_gguf
from fasttune.run_folder import FinishedRun, open_run, read_status, record_step, run_folder, write_dir, write_json

LOCK, REPORT = ".export.lock", "export.json"


@dataclass
class Job:
    """One export: what every writer gets."""

    run: FinishedRun
    out_dir: Path
    quants: list[str]
    verify_prompts: int
    verify_tokens: int
    say: object
    merged_dir: Path  # export/merged when asked for, else a scratch folder (GGUF is written from it)
    ledger: Ledger  # export.json: each writer adds the record of every output it wrote
    scratch: Path  # removed when the export ends, however it ends
    merge_info: dict | None = None  # set once the merge ran: formats that need it share one merge
    reference: dict = field(default_factory=dict)  # the merged model's greedy tokens, computed once


def export(run_dir: Path, formats: list[str], quants: list[str], out_dir: Path | None = None, force: bool = False,
           verify_prompts: int = 3, verify_tokens: int = 32, say=print) -> dict:
    """Write `formats` for the finished run at `run_dir`; status.json's `export` says how it went
    ('running', then 'done', 'failed' or 'interrupted'). Ctrl-C and SIGTERM end it as RunInterrupted."""
    out_dir = out_dir or run_dir / "export"
    with only_export(run_dir, out_dir):
        run = check_request(run_dir, formats, quants, out_dir, force)
        if "gguf" in formats:  # llama.cpp, installed now on its first use, before any other work
            from fasttune.gguf_inference import runtime

            runtime(say)
        record_step(run_dir, "export", "running")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            ledger = Ledger(out_dir, run_dir)
            with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
                merged_dir = out_dir / "merged" if "merged" in formats else Path(scratch) / "merged"
                job = Job(run, out_dir, quants, verify_prompts, verify_tokens, say, merged_dir, ledger, Path(scratch))
                for name in FORMATS:  # in the table's order
                    if name in formats:
                        WRITERS[name](job)
        except BaseException as error:
            interrupted = isinstance(error, KeyboardInterrupt)
            record_step(run_dir, "export", "interrupted" if interrupted else "failed", error)
            if interrupted:
                raise RunInterrupted(f"the export of {run_dir} was interrupted; the run is intact and no output was "
                                     "left half-written. Run the export again (--force replaces what it did write)") \
                    from None
            raise
        record_step(run_dir, "export", "done")
    return ledger.report


class Ledger:
    """export.json of one output folder, as this export adds to it (the module docstring has its shape)."""

    def __init__(self, out_dir: Path, run_dir: Path):
        self.path = out_dir / REPORT
        earlier = read_report(out_dir)
        history = [*earlier.get("history", []), *({"run": earlier.get("run"), **r} for r in earlier.get("exports", []))]
        self.report = {"run": str(run_dir), "exports": [], "history": history}

    def add(self, record: dict) -> None:
        self.report["exports"].append({**record, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        write_json(self.path, self.report)


def read_report(out_dir: Path) -> dict:
    """An output folder's export.json ({} before its first export)."""
    path = out_dir / REPORT
    return json.loads(path.read_text()) if path.is_file() else {}


def written_by_fasttune(out_dir: Path) -> set[str]:
    """The names, in `out_dir`, of every output export.json records: what --force may replace."""
    report = read_report(out_dir)
    return {Path(record[key]).name for record in [*report.get("history", []), *report.get("exports", [])]
            for key in ("path", "modelfile") if key in record}


@contextmanager
def only_export(run_dir: Path, out_dir: Path):
    """Hold the run folder's export lock, and the output folder's when it lies elsewhere (two runs exported
    to one --out), while the block runs; an ExportError at once when another export holds either (the
    module docstring says why it does not wait). The locks are the operating system's (flock), released
    when the process ends however it ends: a killed export blocks nothing."""
    run_dir = run_folder(run_dir)
    locks = {run_dir: run_dir / LOCK}
    if not out_dir.resolve().is_relative_to(run_dir.resolve()):  # beside the folder: nothing written in it yet
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        locks[out_dir] = out_dir.parent / f".{out_dir.name}{LOCK}"
    with ExitStack() as held:
        for folder, path in locks.items():
            try:
                held.enter_context(FileLock(path, timeout=0))
            except Timeout:
                raise ExportError(busy(run_dir, folder)) from None
        yield


def busy(run_dir: Path, folder: Path) -> str:
    """The refusal when another export holds `folder`'s lock."""
    if folder != run_dir:
        return (f"another export into {folder} is running; run this one again once it has finished, or export "
                "to another --out")
    status = read_status(run_dir)
    return (f"another export of {run_dir} is running (status.json: export {status.get('export')}, updated "
            f"{status.get('updated')}); run this one again once it has finished")


def check_request(run_dir: Path, formats: list[str], quants: list[str], out_dir: Path, force: bool) -> FinishedRun:
    """Everything that can be refused, refused before any work."""
    check(formats, quants, where="export")
    run = open_run(run_dir)
    refusal = run.task_class().gguf_refusal
    if "gguf" in formats and refusal:
        raise ExportError(refusal)
    if "adapter" in formats and run.full_finetune:
        raise ExportError(NO_ADAPTER)
    existing = [p for f in formats for p in FORMATS[f].outputs(out_dir, quants) if p.exists()]
    if existing and not force:
        raise ExportError(f"{existing[0]} exists; pass --force to replace it")
    foreign = [p for p in existing if p.name not in written_by_fasttune(out_dir)]
    if foreign:
        raise ExportError(f"{foreign[0]} exists and was not written by fasttune export ({out_dir / REPORT} has no "
                          "record of it), so --force leaves it alone; move it away or export to another --out")
    return run


def _adapter(job: Job) -> None:
    target = job.out_dir / "adapter"
    write_dir(target, lambda tmp: shutil.copytree(job.run.weights, tmp))
    job.ledger.add({"format": "adapter", "path": str(target)})


def _merged(job: Job) -> None:
    _ensure_merged(job)
    job.ledger.add(job.merge_info)


def _ensure_merged(job: Job) -> Path:
    """The merged 16-bit model, merged on first use."""
    from fasttune.export.merged import merge

    if job.merge_info is None:  # merge() replaces an existing merged/ by rename, the old copy deleted last
        started = time.perf_counter()
        job.merge_info = merge(job.run, job.merged_dir, job.say)
        job.merge_info["seconds"] = round(time.perf_counter() - started, 1)
    return job.merged_dir


def _gguf(job: Job) -> None:
    from transformers import AutoTokenizer

    from fasttune.export import conformance as template_conformance
    from fasttune.export.modelfile import write_modelfile
    from fasttune.export.verify import agreement, held_out_texts, hf_greedy

    merged_dir = _ensure_merged(job)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    prompts, unverified = held_out_texts(job.run, job.verify_prompts)
    # the k-quants are quantized from one f16 conversion: the f16 output, written first, or a scratch file
    f16 = job.out_dir / "model-f16.gguf" if "f16" in job.quants else job.scratch / "model-f16.gguf"
    for quant in sorted(job.quants, key=lambda q: q != "f16"):
        path = job.out_dir / f"model-{quant}.gguf"
        job.say(f"Writing {path.name}")
        started = time.perf_counter()
        write_gguf(merged_dir, path, quant, job.say, f16=f16, tokenizer=tokenizer)  # temp name + rename inside
        info = {"format": "gguf", "quant": quant, "path": str(path), "size_bytes": path.stat().st_size,
                "seconds": round(time.perf_counter() - started, 1)}
        modelfile = path.with_suffix(".Modelfile")
        write_modelfile(modelfile, path.name, tokenizer)
        info["modelfile"] = str(modelfile)
        info["template_conformance"] = conformance = template_conformance.check(path, modelfile, tokenizer)
        if conformance["problems"]:  # a runtime would prompt the model otherwise than training did
            path.unlink(missing_ok=True)
            modelfile.unlink(missing_ok=True)
            raise ExportError(f"{path.name} would not be prompted as the model was trained, so it and its Modelfile "
                              f"were removed: {'; '.join(conformance['problems'])}")
        job.say(f"{path.name}: the template renders as in training ({conformance['same_text']}/"
                f"{conformance['compared']} renders of {len(conformance['cases'])} conversations identical, "
                f"{conformance['identical']} of them in token ids too)")
        for split in conformance["tokenizer_differences"][:1]:
            job.say(f"Warning: llama.cpp's tokenizer splits the same text otherwise than the model's own: "
                    f"{split['said']}")
        if unverified:
            info["verification"] = {"skipped": unverified}
            job.say(f"{path.name}: not verified ({unverified})")
        else:
            try:
                if "answers" not in job.reference:
                    job.reference["answers"] = hf_greedy(merged_dir, tokenizer, prompts, job.verify_tokens)
                v = info["verification"] = agreement(path, prompts, job.reference["answers"], job.verify_tokens)
            except BaseException:  # a file whose check could not run is not left looking like a finished export
                path.unlink(missing_ok=True)
                modelfile.unlink(missing_ok=True)
                raise
            job.say(f"{path.name}: {info['size_bytes'] / 2**20:.1f} MiB, greedy tokens matching the merged model: "
                    f"{v['matched_tokens']}/{v['total_tokens']} as answered, {v['next_token_matches']}/"
                    f"{v['total_tokens']} given the merged model's answer so far "
                    f"({v['exact_prompts']}/{len(prompts)} prompts exact){_near_ties(v)}")
        job.ledger.add(info)


def _near_ties(verification: dict) -> str:
    margins = [p["first_difference"]["merged_margin"] for p in verification["prompts"] if "first_difference" in p]
    if not margins:
        return ""
    return f"; the merged model's margin where they first differ: {', '.join(map(str, margins))} logits"


WRITERS = {"adapter": _adapter, "merged": _merged, "gguf": _gguf}
if WRITERS.keys() != FORMATS.keys():  # the table and the writers must name the same formats
    raise ImportError(f"export writers {sorted(WRITERS)} do not match the formats table {sorted(FORMATS)}")
