"""Every error fasttune raises for the user to fix: one base class, so the CLI can turn each of them
into a message and exit 2 (and a library caller can catch them all with one `except`).

Anything that is not a FasttuneError is a bug in fasttune or in a library below it, and keeps its
traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

SHOWN = 10  # data problems printed in full; the rest are counted


class FasttuneError(Exception):
    """Base of every error that is the user's to fix; `label` starts the CLI's message."""

    label = "Error"
    exit_code = 2


class ConfigError(FasttuneError, ValueError):
    """A recipe, override or command-line value that cannot work."""


class RewardError(ConfigError):
    """A GRPO reward function misbehaved; the message names it."""


class TemplateError(FasttuneError, ValueError):
    """The chat template cannot be used to mask assistant turns."""

    label = "Chat template error"


class ExportError(FasttuneError, ValueError):
    """A model, run or option the exporter cannot handle; the message says what it can."""

    label = "Export error"


class GoTemplateError(ExportError):
    """A Modelfile TEMPLATE uses Go template constructs that fasttune's renderer of them
    (fasttune/export/go_template.py) does not implement, or is malformed."""


class RequestError(FasttuneError, ValueError):
    """An HTTP request `fasttune serve` understood and refuses: answered with `status` (400 unless said)
    and this message, in OpenAI's error shape; `param` names the request field at fault."""

    label = "Bad request"

    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


class EvaluationError(FasttuneError):
    """The evaluation after training failed; the trained adapter is saved and the message says how to redo it."""

    label = "Evaluation failed"


class TrainingDiverged(FasttuneError):
    """The loss or gradient norm stopped being a finite number; the message says where and why."""

    label = "Training stopped"


class StorageError(FasttuneError):
    """A file of the run folder could not be written (a full disk, a folder removed under the run): the
    message names the file and what to do; the run is marked failed."""

    label = "Cannot write"


class RunInterrupted(FasttuneError):
    """Ctrl-C or SIGTERM: the message says what was kept (a checkpoint, the adapter) and the command that goes on."""

    label = "Interrupted"
    exit_code = 130  # what a shell reports for a process ended by Ctrl-C


@dataclass
class Problem:
    """One thing wrong with one row of data."""

    where: str  # "data.jsonl:12" or "data.parquet row 12"
    field: str  # "messages[1].role"; "" for the row as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.field}: {self.message}" if self.field else f"{self.where}: {self.message}"


class DataError(FasttuneError):
    """Bad training data. str() lists the first problems, one per line, and counts the rest."""

    label = "Data error"

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = [str(p) for p in problems[:SHOWN]]
        if len(problems) > SHOWN:
            shown.append(f"... and {len(problems) - SHOWN} more problems")
        super().__init__("\n".join(shown))
