"""Run a composite action's single step the way the GitHub runner does (for the action tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.actions import _runner

ROOT = Path(__file__).resolve().parents[1]
_EXPRESSION = re.compile(r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}")
_INSTALLED = "${{ steps.install.outputs.shipml }}"


def load_action(stage: str) -> dict[str, Any]:
    """Return the parsed ``actions/<stage>/action.yml``."""
    return _runner.load_action(ROOT / "actions" / stage)


def run_step(stage: str, inputs: dict[str, str], workdir: Path,
             extra_env: Mapping[str, str] | None = None
             ) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run the action's stage step with ``inputs``; return the process and its step outputs.

    Like the runner: input expressions are evaluated into the step's ``env`` (never into the
    script), the script runs under ``bash --noprofile --norc -eo pipefail`` in the step's
    working directory, and outputs are read back from ``GITHUB_OUTPUT``. The setup steps before
    it are stood in for by this environment's ``shipml`` (what their ``install`` step outputs).
    ``extra_env`` stands for the job's own environment (the event payload, the API URL).
    """
    action = load_action(stage)
    values = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    values.update(inputs)
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == stage]
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SHIPML_", "GITHUB_"))}
    for name, expression in step["env"].items():
        expression = str(expression).replace(_INSTALLED, str(Path(sys.executable).parent / "shipml"))
        env[name] = _EXPRESSION.sub(lambda m: values[m.group(1)], expression)
    cwd = workdir / _EXPRESSION.sub(lambda m: values[m.group(1)], step["working-directory"])
    outputs_file = workdir / "github_output.txt"
    outputs_file.write_text("")
    env.update({"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(outputs_file),
                "GITHUB_ACTION_PATH": str(ROOT / "actions" / stage), **(extra_env or {}),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
    script = workdir / "step.sh"
    script.write_text(step["run"])
    completed = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                               cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return completed, _runner.parse_output_file(outputs_file.read_text())

