"""What the tests need from the machine, and the one policy when it is missing.

The real services (the Docker Engine, the two local registries, the base and router images) and
the programs the tests start themselves (``docker-registry``, ``htpasswd``, ``prometheus``) all
come from one script, ``bash .ci/services`` (idempotent: a second run reuses what runs). A test
that needs one runs that script once per session; when it still is not there, the test fails
with the command and what the script said. No test is ever skipped for a missing service: a
skipped test looks green in a run that checked nothing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: the command that starts (or installs) every service the tests use
START_COMMAND = "bash .ci/services"
#: how long .ci/services may take on a bare machine (it installs packages and builds images)
START_TIMEOUT_S = 1200

_started: list[bool] = []


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now (nor, for a test that
    wants a closed port, will: nothing binds it until the caller does)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_services() -> None:
    """Run ``bash .ci/services`` once per session; fail the test (never skip it) with the command
    and the script's output when it cannot start what the tests need."""
    if _started:
        return
    try:
        completed = subprocess.run(["bash", str(REPO / ".ci" / "services")], capture_output=True,
                                   text=True, timeout=START_TIMEOUT_S, check=False, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{START_COMMAND}` did not finish in {START_TIMEOUT_S} s")
    if completed.returncode != 0:
        pytest.fail(f"`{START_COMMAND}` could not start the services the tests need "
                    f"(exit {completed.returncode}):\n{completed.stdout}{completed.stderr}")
    _started.append(True)


def require_tools(*tools: str) -> None:
    """Make sure each program in ``tools`` is on PATH, running ``bash .ci/services`` (which
    installs them) when one is not; fail the test naming the command when that did not help."""
    if all(shutil.which(tool) for tool in tools):
        return
    start_services()
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not on PATH after `{START_COMMAND}`: run it as root "
                    "(it installs them with apt-get)")
