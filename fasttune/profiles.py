"""Install profiles: which pinned stack suits this machine, which one is installed, and whether
Unsloth runs on the stack it declares.

Two profiles live in `requirements/` of a clone (one file each, with what was verified on it):
- `cpu`: transformers 5.23 / trl 1.16, under which both backends train on CPU (CI runs this);
- `gpu`: the transformers/trl range Unsloth declares, under which its memory savings engage on CUDA.

This module imports only the standard library at the top: `scripts/install.sh` runs it as a plain
script (`python fasttune/profiles.py choose`) before fasttune or its stack is installed.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
from pathlib import Path

PROFILES = ("cpu", "gpu")
REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements"
STACK = ("transformers", "trl")  # the packages whose range decides whether Unsloth's savings engage
FIX = "bash scripts/install.sh  (from a fasttune clone: with CUDA present it installs the gpu profile)"

_warned = False


def cuda_present() -> bool:
    """A CUDA GPU that torch can use; without torch yet, whether an NVIDIA driver is installed."""
    try:
        import torch
    except ImportError:
        return shutil.which("nvidia-smi") is not None
    return torch.cuda.is_available()


def choose(cuda: bool) -> str:
    """The profile to install: gpu where CUDA is, cpu elsewhere."""
    return "gpu" if cuda else "cpu"


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def pins(profile: str, folder: Path = REQUIREMENTS) -> dict[str, str]:
    """{package: version} for the `name==version` lines of a profile file (ranges are not pins)."""
    out = {}
    for line in (folder / f"{profile}.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, pinned = line.partition("==")
            out[name.strip().lower().replace("_", "-")] = pinned.strip()
    return out


def installed_profile(folder: Path = REQUIREMENTS) -> tuple[str | None, str]:
    """(profile, explanation): the profile whose every pin is installed, or None and what differs."""
    if not folder.is_dir():
        return None, "unknown: no requirements/ folder (fasttune was not installed from a clone)"
    differences = {}
    for profile in PROFILES:
        wrong = [f"{name} {version(name) or 'missing'} (pinned {pinned})"
                 for name, pinned in pins(profile, folder).items() if version(name) != pinned]
        if not wrong:
            return profile, f"{profile} (every pin in requirements/{profile}.txt is installed)"
        differences[profile] = wrong
    detail = "; ".join(f"{p}: {', '.join(w[:3])}" for p, w in differences.items())
    return None, f"none (installed versions differ from both profiles: {detail})"


def unsloth_declared() -> dict[str, object]:
    """The transformers/trl version ranges Unsloth's own metadata requires (its base requirements,
    not an extra), as packaging SpecifierSets. Empty when Unsloth is not installed."""
    try:
        requirements = importlib.metadata.requires("unsloth") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    from packaging.requirements import Requirement

    declared = {}
    for line in requirements:
        requirement = Requirement(line)
        if requirement.name in STACK and (requirement.marker is None or requirement.marker.evaluate({"extra": ""})):
            declared[requirement.name] = requirement.specifier
    return declared


def unsloth_stack_warning(cuda: bool) -> str | None:
    """What it costs when Unsloth runs on CUDA with transformers/trl outside the range it declares
    (None when it does not, or off CUDA, where Unsloth's CPU fallback has no such savings to lose)."""
    if not cuda:
        return None
    outside = [f"{name} {version(name)} (Unsloth {version('unsloth')} declares {spec})"
               for name, spec in unsloth_declared().items()
               if version(name) and not spec.contains(version(name), prereleases=True)]
    if not outside:
        return None
    return ("Unsloth is running outside the stack it declares: " + "; ".join(outside) + ". Its offloaded "
            "gradient checkpointing then does not engage, so the Unsloth backend loses its memory savings "
            "(measured on an H100, 8B model, one 16k-token row: 63 GiB instead of 7.6 GiB). Fix: " + FIX)


def warn_unsloth_stack_once(cuda: bool, say=print) -> str | None:
    """Print unsloth_stack_warning once per process (env and run both call it)."""
    global _warned
    message = unsloth_stack_warning(cuda)
    if message and not _warned:
        _warned = True
        say(f"Warning: {message}")
    return message


if __name__ == "__main__":  # used by scripts/install.sh before fasttune is installed
    if sys.argv[1:] == ["choose"]:
        print(choose(cuda_present()))
    else:
        sys.exit("usage: python fasttune/profiles.py choose")
