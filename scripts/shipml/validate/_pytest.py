"""The team's own model tests: run in a child pytest with shipml's fixtures, read back as checks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shipml.errors import ConfigError
from shipml.results import Check

PYTEST_MISSING = (
    "pytest is not installed in this environment; install it beside shipml: "
    "pip install pytest (the validate extra includes it: "
    "pip install \"shipml[validate]\")"
)

#: Variables a pull request's test code must not read: tokens, keys and passwords by name, the
#: runner's own service credentials, and the files through which a step changes later steps.
_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|AUTH(?!OR_|OR$)|COOKIE|SESSION"
    r"|_PAT$|^PAT_|_KEY$",
    re.IGNORECASE,
)
_RUNNER_PRIVATE = frozenset({
    "ACTIONS_RUNTIME_URL", "ACTIONS_CACHE_URL", "ACTIONS_RESULTS_URL", "ACTIONS_ID_TOKEN_REQUEST_URL",
    "GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STATE", "GITHUB_STEP_SUMMARY",
    "SSH_AUTH_SOCK", "GIT_ASKPASS", "SSH_ASKPASS",
})
#: a URL that carries a user and password (``https://user:secret@host``), whatever the name
_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s@:]*:[^/\s@]*@", re.IGNORECASE)


@dataclass(frozen=True)
class PytestOutcome:
    """The model tests' records and pytest's own exit code."""

    checks: list[Check]
    exit_code: int


def run_model_tests(paths: Sequence[Path], args: Sequence[str], *, where: str, cwd: Path,
                    junit_path: Path, environ: Mapping[str, str]) -> PytestOutcome:
    """Run pytest on ``paths`` with the shipml plugin; return one check per test.

    Raises ConfigError when a path does not exist or no test was collected.
    """
    for path in paths:
        if not path.exists():
            raise ConfigError(f"{where}: {path} does not exist (no model tests found there)")
    try:
        import pytest  # noqa: F401
    except ImportError:
        raise ConfigError(PYTEST_MISSING) from None
    junit_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pytest", "-p", "shipml.pytest_plugin", "-p", "no:cacheprovider",
        "-q", "--no-header", "-o", "junit_family=xunit2", f"--junitxml={junit_path}",
        *args, *(str(path) for path in paths),
    ]
    env = scrub_environment(environ)
    env.pop("PYTEST_ADDOPTS", None)
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                               check=False)
    if completed.returncode == 5:
        raise ConfigError(f"{where}: pytest collected no tests in {', '.join(map(str, paths))}")
    if completed.returncode in (3, 4) or not junit_path.exists():
        tail = (completed.stdout + completed.stderr).strip().splitlines()[-5:]
        raise ConfigError(f"{where}: pytest could not run the model tests: {' | '.join(tail)}")
    return PytestOutcome(checks=read_junit(junit_path), exit_code=completed.returncode)


def scrub_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Return ``environ`` without anything a pull request's model tests could abuse.

    The model tests are code from the pull request: they get no token, key or password (by name,
    e.g. ``GITHUB_TOKEN``, ``SHIPML_GITHUB_TOKEN``, ``ACTIONS_RUNTIME_TOKEN``, ``*_SECRET``), no
    URL with credentials in it, and not the runner's files that change later steps
    (``GITHUB_ENV``, ``GITHUB_OUTPUT``, ``GITHUB_PATH``).
    """
    return {
        name: value for name, value in environ.items()
        if not _SECRET_NAME.search(name) and name.upper() not in _RUNNER_PRIVATE
        and not _URL_WITH_PASSWORD.search(value)
    }


def read_junit(path: Path) -> list[Check]:
    """Return one check per ``<testcase>`` of a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    checks = []
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        classname = case.get("classname", "")
        test_id = f"{classname.replace('.', '/')}.py::{name}" if classname else name
        failure = case.find("failure")
        error = case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            status, node = "fail", failure
        elif error is not None:
            status, node = "error", error
        elif skipped is not None:
            status, node = "warn", skipped
        else:
            status, node = "pass", None
        message = (node.get("message", "") if node is not None else "").strip()
        checks.append(Check(
            name=f"pytest {test_id}",
            status=status,  # type: ignore[arg-type]
            observed=message.splitlines()[0][:160] if message else status,
            threshold="passes",
            detail=(node.text or message).strip()[:2000] if node is not None else "",
            group="pytest",
        ))
    return checks


def model_test_env(base: Mapping[str, str], config_file: Path | None, model: Path,
                   train: Path, test: Path) -> dict[str, str]:
    """Return the environment that points the plugin's fixtures at the validated files."""
    env = dict(base)
    if config_file is not None:
        env["SHIPML_CONFIG"] = str(config_file.resolve())
    env["SHIPML_MODEL"] = str(model.resolve())
    env["SHIPML_TRAIN"] = str(train.resolve())
    env["SHIPML_TEST"] = str(test.resolve())
    scripts = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (scripts, env.get("PYTHONPATH", "")) if p)
    return env
