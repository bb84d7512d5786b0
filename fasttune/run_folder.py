"""The run folder `runs/<recipe>-<timestamp>/` and its status.json, the file that says whether the
run finished. It is written 'running' first and 'finished' last, so a crash or Ctrl-C never
leaves a folder that claims success; files are written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path


def write_json(path: Path, value) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class RunFolder:
    def __init__(self, path: Path):
        self.path = path
        self.name = path.name

    @classmethod
    def create(cls, runs_dir: str, prefix: str) -> RunFolder:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        root = Path(runs_dir)
        root.mkdir(parents=True, exist_ok=True)
        for n in range(100):
            path = root / (f"{prefix}-{stamp}" + (f"-{n}" if n else ""))
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
        raise FileExistsError(f"could not create a new run folder under {root}")

    def status(self, state: str, **extra) -> None:
        write_json(self.path / "status.json", {"status": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra})

    def fail(self, error: BaseException) -> None:
        state = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        self.status(state, error=f"{type(error).__name__}: {error}",
                    traceback="".join(traceback.format_exception(error))[-4000:])


def find_checkpoint(path: str) -> Path:
    """The checkpoint to resume from: `path` itself, or the newest one in a run folder's checkpoints/."""
    from fasttune.config import ConfigError

    folder = Path(path)
    if (folder / "trainer_state.json").is_file():
        return folder
    found = sorted((folder / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    if not found:
        raise ConfigError(f"train.resume: {path} is neither a checkpoint folder nor a run folder with checkpoints "
                          "(set train.save_steps to write them)")
    return found[-1]
