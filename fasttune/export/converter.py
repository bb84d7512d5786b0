"""llama.cpp's own Hugging Face -> GGUF converter, run as a dependency rather than rewritten.

GGUF export has to know every architecture llama.cpp runs (tensor names, rotary layouts, tokenizer
pre-splitting, per-family metadata); llama.cpp's `convert_hf_to_gguf.py` is where that knowledge is
kept up to date. PyPI has no package that installs it beside the `gguf` package fasttune uses: it
ships inside the source distribution of llama-cpp-python, next to the llama.cpp that this same
package compiles and runs. `fetch` takes it from the sdist of the *installed* llama-cpp-python
version (so converter and runtime are one llama.cpp commit) into fasttune's cache, once:
`scripts/install.sh --gguf` (or `--dev`) does it, and the first GGUF export does it when it was not
done. `convert` runs it in its own process with its own bundled gguf-py (it needs newer gguf
internals than the `gguf` release fasttune imports), so nothing of it is loaded into fasttune.

    python -m fasttune.export.converter      # fetch it now (prints where)
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from fasttune.errors import ExportError
from fasttune.models import cache_dir

PACKAGE = "llama-cpp-python"
PARTS = ("convert_hf_to_gguf.py", "conversion", "gguf-py")  # what the script needs from vendor/llama.cpp/
OUTTYPES = ("f16", "bf16", "q8_0")  # what the converter writes itself; k-quants are quantized from f16


def version() -> str:
    from fasttune.gguf_inference import runtime

    runtime()  # installed on first use
    return importlib.metadata.version(PACKAGE)


def location() -> Path:
    """Where the converter of the installed llama-cpp-python version lives in fasttune's cache."""
    return cache_dir() / f"llama.cpp-convert-{version()}"


def fetch(say=print) -> Path:
    """The converter's folder, fetched from llama-cpp-python's sdist on the package index when it is
    not in the cache yet (about 80 MB downloaded once; 2 MB kept)."""
    target = location()
    if (target / PARTS[0]).is_file():
        return target
    say(f"Fetching llama.cpp's GGUF converter (the {PACKAGE} {version()} source distribution) into {target}")
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", PACKAGE,
                               "--disable-pip-version-check", "-q", "-d", scratch, f"{PACKAGE}=={version()}"],
                              capture_output=True, text=True)
        archives = list(Path(scratch).glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise ExportError(f"could not download the {PACKAGE} {version()} source distribution, which carries "
                              f"llama.cpp's GGUF converter: {(done.stderr or done.stdout).strip()[-600:]}\n"
                              "Where there is network (or a package index), run `python -m "
                              "fasttune.export.converter` once")
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(archives[0]) as sdist:
            root = sdist.getnames()[0].split("/")[0]
            prefix = f"{root}/vendor/llama.cpp/"
            members = [m for m in sdist.getmembers()
                       if m.name.startswith(prefix) and m.name[len(prefix):].split("/")[0] in PARTS]
            for member in members:
                member.name = member.name[len(prefix):]
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python < 3.10.12: none
            sdist.extractall(partial, members=members, **safe)
        if not (partial / PARTS[0]).is_file():
            shutil.rmtree(partial, ignore_errors=True)
            raise ExportError(f"{archives[0].name} has no vendor/llama.cpp/{PARTS[0]}")
        partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            partial.rename(target)
        except OSError:  # another process fetched it first
            shutil.rmtree(partial, ignore_errors=True)
    return target


def convert(model_dir: Path, out_path: Path, outtype: str, say=print) -> None:
    """Run the converter on an HF folder: `out_path` as one GGUF of type `outtype` (one of OUTTYPES).
    An architecture or tokenizer it cannot convert ends in an ExportError with its own words."""
    folder = fetch(say)
    command = [sys.executable, str(folder / PARTS[0]), str(model_dir), "--outtype", outtype,
               "--outfile", str(out_path), "--model-name", Path(model_dir).name]
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # its own gguf-py, not ours
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not out_path.is_file():
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "Error" in line or "not supported" in line),
                      lines[-1] if lines else f"exit code {done.returncode}")
        raise ExportError(f"llama.cpp's converter could not convert {model_dir}: {reason.strip()}")


if __name__ == "__main__":
    print(fetch())
