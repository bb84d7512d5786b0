"""The CLI in fresh processes: `fasttune env`, and README kept in step with .ci/run and the commands the
CLI has."""

from __future__ import annotations

import re

from click.testing import CliRunner

from fasttune.cli import main
from helpers import ROOT, run_cli


def test_env_names_backend_reason_and_versions():
    result = run_cli("env")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Backend 'auto' -> unsloth: imported" in result.stdout
    for package in ("torch", "transformers", "trl", "peft", "unsloth", "llama-cpp-python"):
        assert re.search(rf"\b{package} \d", result.stdout), package
    assert "GPU path missing: no CUDA GPU" in result.stdout  # this machine has none


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(bash scripts/install\.sh[^\n]* && [^\n]+)\n```", readme)


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
