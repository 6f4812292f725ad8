"""The team's own model tests: run in a child pytest with shipml's fixtures, read back as checks."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shipml.errors import ConfigError
from shipml.results import Check

PYTEST_MISSING = (
    "pytest is not installed in this environment; install it beside shipml "
    "(pip install 'shipml[validate]' includes it)"
)


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
    env = dict(environ)
    env.pop("PYTEST_ADDOPTS", None)
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                               check=False)
    if completed.returncode == 5:
        raise ConfigError(f"{where}: pytest collected no tests in {', '.join(map(str, paths))}")
    if completed.returncode in (3, 4) or not junit_path.exists():
        tail = (completed.stdout + completed.stderr).strip().splitlines()[-5:]
        raise ConfigError(f"{where}: pytest could not run the model tests: {' | '.join(tail)}")
    return PytestOutcome(checks=read_junit(junit_path), exit_code=completed.returncode)


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
    env["SHIPML_MODEL_PATH"] = str(model.resolve())
    env["SHIPML_TRAIN_PATH"] = str(train.resolve())
    env["SHIPML_TEST_PATH"] = str(test.resolve())
    scripts = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (scripts, env.get("PYTHONPATH", "")) if p)
    return env
