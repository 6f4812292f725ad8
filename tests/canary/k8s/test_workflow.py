"""The workflow that runs these tests on GitHub's runners (kind): GitHub's schema, zizmor with
every finding on, every action pinned by a full commit SHA, read-only permissions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests._services import REPO

WORKFLOW = REPO / ".github" / "workflows" / "k8s.yml"


def _tool(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    assert found.exists(), f"{name} is a dev dependency: pip install -e '.[dev]'"
    return str(found)


def test_the_workflow_is_valid_for_github() -> None:
    completed = subprocess.run([_tool("check-jsonschema"), "--builtin-schema",
                                "vendor.github-workflows", str(WORKFLOW)],
                               capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_zizmor_finds_nothing_even_as_an_auditor() -> None:
    completed = subprocess.run([_tool("zizmor"), "--offline", "--no-progress", "--no-ignores",
                                "--persona=auditor", "--format", "json", str(WORKFLOW)],
                               capture_output=True, text=True, check=False, cwd=REPO)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert json.loads(completed.stdout) == []


def test_actions_are_pinned_and_permissions_read_only() -> None:
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert document["permissions"] == {"contents": "read"}
    uses = [step["uses"] for job in document["jobs"].values() for step in job["steps"]
            if "uses" in step]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", use) for use in uses), uses
    runs = " ".join(step.get("run", "") for job in document["jobs"].values()
                    for step in job["steps"])
    assert "tests/canary/k8s" in runs
