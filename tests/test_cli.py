"""The CLI in fresh processes: `fasttune env`, a run that fails after its folder exists, and README
kept in step with .ci/run and the commands the CLI has."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from fasttune.cli import main
from helpers import ROOT, run_cli


def test_env_names_backend_reason_and_versions():
    result = run_cli("env")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Backend 'auto' -> unsloth: imported" in result.stdout
    for package in ("torch", "transformers", "trl", "peft", "unsloth"):
        assert re.search(rf"\b{package} \d", result.stdout), package
    assert "GPU path missing: no CUDA GPU" in result.stdout  # this machine has none


def test_unloadable_model_fails_clearly_and_marks_the_run_failed(tmp_path):
    result = run_cli("run", "recipes/chat_sft.py", "model.name=nobody/no-such-model", "model.backend=hf",
                     f"log.runs_dir={tmp_path}", "log.report_to=[]", env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "could not load model 'nobody/no-such-model'" in result.stderr
    assert "Traceback" not in result.stderr
    [run_dir] = list(tmp_path.iterdir())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "no-such-model" in status["error"]
    assert not (run_dir / "eval.json").exists()


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(bash scripts/install\.sh && [^\n]+)\n```", readme)


def test_readme_set_up_commands_are_what_ci_runs():
    main_job, tests = readme_commands()
    assert main_job == "bash scripts/install.sh && fasttune run recipes/chat_sft.py"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == tests


def test_readme_mentions_every_cli_command():
    readme = (ROOT / "README.md").read_text()
    for name in main.commands:
        assert f"fasttune {name}" in readme, name


def test_top_level_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "run" in result.output and "env" in result.output
