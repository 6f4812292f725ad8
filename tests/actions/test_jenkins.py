"""The Jenkinsfile example end to end, without a Jenkins: each stage's environment block and `sh`
command are read from the file and run with the variables a multibranch job sets (CHANGE_ID on a
change request, BRANCH_NAME=main on the default branch), against the local Docker Engine and
registry. What Jenkins itself adds (credentials binding, input, lock, publishing) is checked
statically in test_actions.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.actions._act import EXAMPLE, REPO
from tests.actions.conftest import KEY_PASSWORD, REGISTRY, release_config

JENKINSFILE = REPO / "workflow-templates" / "Jenkinsfile.example"
SHIPML = REPO / ".venv" / "bin" / "shipml"
PIPELINE_ENV = {"SHIPML_CONFIG": "shipml.yaml", "SHIPML_OUTPUT_DIR": ".shipml"}


def stage(name: str) -> str:
    text = JENKINSFILE.read_text(encoding="utf-8")
    start = text.index(f"stage('{name}')")
    following = text.find("        stage('", start + 1)
    return text[start:following if following != -1 else len(text)]


def stage_environment(block: str) -> dict[str, str]:
    """Return the stage's `environment { NAME = 'value' }` entries with literal values."""
    found = re.search(r"environment \{(.*?)\n            \}", block, re.DOTALL)
    return dict(re.findall(r"^\s*(\w+) = '([^']*)'", found[1], re.MULTILINE)) if found else {}


def shipml_commands(block: str) -> list[list[str]]:
    """Return each `.shipml-venv/bin/shipml …` line of the stage as an argv for this checkout."""
    return [[str(SHIPML), *line.split()[1:]]
            for line in re.findall(r"\.shipml-venv/bin/shipml [^'\n]*", block)]


def _workspace(tmp_path: Path, config: dict[str, object]) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    for item in EXAMPLE.iterdir():
        if item.is_file() and item.suffix != ".py":
            shutil.copy2(item, workspace / item.name)
    (workspace / "shipml.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=workspace, check=True)
    subprocess.run([*git, "add", "-A"], cwd=workspace, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "model"], cwd=workspace, check=True)
    subprocess.run([*git, "update-ref", "refs/remotes/origin/main", "HEAD"], cwd=workspace, check=True)
    return workspace


def _jenkins_env(**extra: str) -> dict[str, str]:
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith(("GITHUB_", "SHIPML_", "RUNNER_", "ACT", "JENKINS_", "CHANGE_"))}
    return {**environ, "JENKINS_URL": "http://jenkins.example.invalid/", **PIPELINE_ENV, **extra}


def _run(argv: list[str], workspace: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=workspace, env=environ, capture_output=True, text=True,
                          timeout=900, check=False)


def test_a_change_request_runs_the_gates_and_builds_nothing(tmp_path: Path, service_name: str) -> None:
    block = stage("Validate, optimize, latency, report")
    workspace = _workspace(tmp_path, release_config(service_name))
    environ = _jenkins_env(CHANGE_ID="7", CHANGE_TARGET="main", BRANCH_NAME="PR-7",
                           SHIPML_BASELINE_REF="origin/main")
    (command,) = shipml_commands(block)
    completed = _run(command, workspace, environ)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "the pull-request half (Jenkins change request 7): latency, report" in completed.stdout
    assert not (workspace / ".shipml" / "results" / "build.json").exists()


@pytest.mark.docker
def test_main_releases_then_the_rollout_stage_rolls_out_what_was_signed(
        tmp_path: Path, service: str, test_key: Path) -> None:
    workspace = _workspace(tmp_path, release_config(service))
    environ = _jenkins_env(BRANCH_NAME="main", GIT_COMMIT="0" * 40,
                           SHIPML_SIGN_KEY=str(test_key), COSIGN_PASSWORD=KEY_PASSWORD)
    release = stage("Release: gates, build, push, sign, report")
    environ.update({name: value for name, value in stage_environment(release).items()
                    if name.startswith("SHIPML_") and name != "SHIPML_RELEASE_REQUIREMENT"})
    assert environ["SHIPML_ROLLOUT"] == "false"
    (command,) = shipml_commands(release)
    completed = _run(command, workspace, environ)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert ("the release half (Jenkins build of the default branch main): latency, build, sign, "
            "report") in completed.stdout
    results = workspace / ".shipml" / "results"
    build = json.loads((results / "build.json").read_text())
    assert build["status"] == "pass" and build["metrics"]["image"] == f"{REGISTRY}/{service}"
    assert json.loads((results / "sign.json").read_text())["status"] == "pass"
    assert not (results / "canary.json").exists()  # deferred to the next stage

    rollout = stage("Roll out (canary)")
    condition = re.search(r"sh\(script: '([^']*)'", rollout)
    assert condition is not None
    assert subprocess.run(["sh", "-c", condition[1]], cwd=workspace, env=environ,
                          check=False).returncode == 0  # the stage runs: a canary section exists
    (command,) = shipml_commands(rollout)
    completed = _run(command, workspace, environ)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    canary = json.loads((results / "canary.json").read_text())
    assert canary["metrics"]["phase"] == "promoted"
    assert canary["metrics"]["image"] == build["handoff"][0]["ref"]
