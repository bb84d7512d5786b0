"""`fasttune export RUN_DIR --to adapter|merged|gguf`: the trained model in the forms other tools load.

    adapter -> RUN/export/adapter/            LoRA weights + tokenizer + chat template
    merged  -> RUN/export/merged/             16-bit HF folder (fasttune/export/merged.py)
    gguf    -> RUN/export/model-<quant>.gguf  + <name>.Modelfile for Ollama (fasttune/export/gguf.py)

Nothing is downloaded or compiled: the GGUF is written by the `gguf` package and k-quants come
from the llama.cpp quantizer inside llama-cpp-python. Each GGUF is then checked: llama.cpp's greedy
answers to held-out prompts are compared token by token with the merged HF model's, and the
agreement goes into export.json. Every output is written under a temporary name and renamed, and
an existing output is an error unless `force` is set.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from fasttune.config import ConfigError
from fasttune.export.gguf import QUANTS, ExportError, write_gguf
from fasttune.run_folder import write_json


def check_request(run_dir: Path, formats: list[str], quants: list[str], out_dir: Path, force: bool) -> dict:
    """Everything that can be refused, refused before any work: returns the run's config."""
    config_file = run_dir / "config.json"
    if not config_file.is_file() or not (run_dir / "adapter").is_dir():
        raise ConfigError(f"{run_dir}: not a finished run folder (needs config.json and adapter/)")
    status = json.loads((run_dir / "status.json").read_text()).get("status")
    if status not in ("finished", "exporting"):
        raise ConfigError(f"{run_dir}: the run did not finish (status: {status})")
    config = json.loads(config_file.read_text())
    bad = [q for q in quants if q not in QUANTS]
    if bad:
        raise ExportError(f"unknown GGUF quantization {', '.join(bad)}; valid: {', '.join(QUANTS)}")
    if "gguf" in formats and config["task"]["type"] == "Classification":
        raise ExportError("a classification model cannot be exported to GGUF: llama.cpp would let it answer any "
                          "text, not only a valid label. Export 'merged' or 'adapter' and use `fasttune predict`.")
    existing = [p for p in outputs(out_dir, formats, quants) if p.exists()]
    if existing and not force:
        raise ExportError(f"{existing[0]} exists; pass --force to replace it")
    return config


def outputs(out_dir: Path, formats: list[str], quants: list[str]) -> list[Path]:
    paths = [out_dir / f for f in ("adapter", "merged") if f in formats]
    if "gguf" in formats:
        paths += [out_dir / f"model-{q}.gguf" for q in quants]
    return paths


def export(run_dir: Path, formats: list[str], quants: list[str], out_dir: Path | None = None, force: bool = False,
           verify_prompts: int = 3, verify_tokens: int = 32, progress=print) -> dict:
    out_dir = out_dir or run_dir / "export"
    config = check_request(run_dir, formats, quants, out_dir, force)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    if "adapter" in formats:
        results.append(_replace(out_dir / "adapter", lambda tmp: shutil.copytree(run_dir / "adapter", tmp)))
        results[-1].update(format="adapter")
    with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
        if "merged" in formats or "gguf" in formats:
            from fasttune.export.merged import merge

            merged_dir = out_dir / "merged" if "merged" in formats else Path(scratch) / "merged"
            _remove(merged_dir)
            started = time.perf_counter()
            info = merge(run_dir, merged_dir, progress)
            info["seconds"] = round(time.perf_counter() - started, 1)
            if "merged" in formats:
                results.append(info)
        if "gguf" in formats:
            results += _gguf(run_dir, config, merged_dir, out_dir, quants, verify_prompts, verify_tokens, progress)
    report = {"run": str(run_dir), "exports": results}
    write_json(out_dir / "export.json", report)
    return report


def _gguf(run_dir, config, merged_dir, out_dir, quants, verify_prompts, verify_tokens, progress) -> list[dict]:
    from transformers import AutoTokenizer

    from fasttune.export.modelfile import write_modelfile
    from fasttune.export.verify import agreement, held_out_prompts

    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    prompts = held_out_prompts(config, tokenizer, verify_prompts)
    reference = None
    results = []
    for quant in quants:
        path = out_dir / f"model-{quant}.gguf"
        progress(f"Writing {path.name}")
        started = time.perf_counter()
        write_gguf(merged_dir, path, quant, progress)  # temp name + rename inside
        info = {"format": "gguf", "quant": quant, "path": str(path), "size_bytes": path.stat().st_size,
                "seconds": round(time.perf_counter() - started, 1)}
        modelfile = path.with_suffix(".Modelfile")
        write_modelfile(modelfile, path.name, tokenizer)
        info["modelfile"] = str(modelfile)
        if prompts:
            if reference is None:
                reference = _hf_greedy(merged_dir, tokenizer, prompts, verify_tokens)
            info["verification"] = agreement(path, prompts, reference, verify_tokens)
            v = info["verification"]
            progress(f"{path.name}: {info['size_bytes'] / 2**20:.1f} MiB, greedy tokens matching the merged model: "
                     f"{v['matched_tokens']}/{v['total_tokens']} ({v['exact_prompts']}/{len(prompts)} prompts exact)")
        results.append(info)
    return results


def _hf_greedy(merged_dir: Path, tokenizer, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """The merged HF model's greedy token ids (float32) for already rendered prompts."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    out = []
    for text in prompts:
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        new = gen[0, ids["input_ids"].shape[1]:].tolist()
        out.append([t for t in new if t not in (tokenizer.eos_token_id,)][:max_new_tokens])
    return out


def _replace(target: Path, build) -> dict:
    tmp = target.with_name(f".{target.name}.tmp")
    _remove(tmp)
    build(tmp)
    _remove(target)
    tmp.rename(target)
    return {"path": str(target)}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
