"""How long `bash scripts/install.sh` takes on a fresh machine that already has torch (Colab's case).

A clean clone of this repository's HEAD, a new virtual environment with torch installed first (not
timed), then the install script timed with pip's cache off (PIP_NO_CACHE_DIR=1), as given or with its
options. Afterwards it records whether llama-cpp-python and ipykernel are installed: the default install
compiles nothing and leaves Jupyter alone.

    python benchmarks/install_time.py                       # writes benchmarks/results/install-*.json
    python benchmarks/install_time.py --torch-wheel /opt/wheels/torch-2.13.0+cpu-...whl --option=--gguf
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import ROOT, record, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-wheel", default="torch==2.13.0", help="what pip installs as torch first")
    parser.add_argument("--option", action="append", default=[], help="an option for install.sh (repeatable)")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        clone, venv = Path(tmp) / "fasttune", Path(tmp) / "venv"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        subprocess.run([str(python), "-m", "pip", "install", "-q", args.torch_wheel], check=True)
        env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "PIP_NO_CACHE_DIR": "1",
               "FASTTUNE_CACHE": str(Path(tmp) / "cache"), "VIRTUAL_ENV": str(venv)}
        started = time.perf_counter()
        done = subprocess.run(["bash", "scripts/install.sh", *args.option], cwd=clone, env=env,
                              capture_output=True, text=True)
        seconds = round(time.perf_counter() - started, 1)
        found = subprocess.run([str(python), "-c", "import importlib.util as u, json; print(json.dumps("
                                "{m: u.find_spec(m) is not None for m in ('fasttune', 'unsloth', 'llama_cpp', "
                                "'ipykernel')}))"], capture_output=True, text=True)
    result = {"benchmark": "install", "command": " ".join(["bash scripts/install.sh", *args.option]),
              "torch_installed_first": args.torch_wheel, "seconds": seconds, "returncode": done.returncode,
              "installed": json.loads(found.stdout) if found.returncode == 0 else found.stderr[-1000:],
              "output_tail": (done.stdout + done.stderr)[-1500:], "load_average_1_5_15_min_at_start": load,
              "provenance": record()}
    print(json.dumps({k: result[k] for k in ("command", "seconds", "returncode", "installed")}))
    write_result("install", result)


if __name__ == "__main__":
    main()
