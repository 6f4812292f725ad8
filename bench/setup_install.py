"""actions/setup's cold install of the validate extra: pip against uv, in one run (target: uv <= 0.35x pip).

Runs actions/setup/setup.sh install the way the action's step does, twice, each into a fresh
RUNNER_TEMP with empty pip and uv caches (nothing downloaded before counts): once with
SHIPML_SETUP_INSTALLER=uv (which pip-installs uv from PyPI first, as the action does where uv is not
on PATH; that counts) and once with SHIPML_SETUP_INSTALLER=pip. uv runs first, so a proxy between
this machine and PyPI that caches can only favour pip. Prints both wall times side by side with
their ratio.

    python bench/setup_install.py [--extras validate]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETUP_SCRIPT = Path(__file__).resolve().parents[1] / "actions" / "setup" / "setup.sh"
TARGET_RATIO = 0.35


def cold_install(installer: str, extras: str) -> tuple[float, str]:
    """Install shipml[extras] with ``installer`` into a fresh venv with empty caches; return the
    wall time in seconds and the step's log. Exits when the install fails."""
    with tempfile.TemporaryDirectory(prefix=f"shipml-install-{installer}-") as temp:
        root = Path(temp)
        env = {
            **{name: value for name, value in os.environ.items()
               if not name.startswith(("GITHUB_", "SHIPML_", "RUNNER_", "UV_", "PIP_CACHE", "XDG_CACHE"))},
            "RUNNER_TEMP": str(root),
            "GITHUB_OUTPUT": str(root / "output"),
            "SHIPML_SETUP_EXTRAS": extras,
            "SHIPML_SETUP_INSTALLER": installer,
            "PIP_CACHE_DIR": str(root / "pip-cache"),
            "UV_CACHE_DIR": str(root / "uv-cache"),
            "XDG_CACHE_HOME": str(root / "cache"),
        }
        started = time.perf_counter()
        completed = subprocess.run(["bash", str(SETUP_SCRIPT), "install"], env=env,
                                   capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"setup.sh with {installer} failed ({completed.returncode}):\n"
                 f"{completed.stdout}\n{completed.stderr}")
    if f"installing with {installer}" not in completed.stdout:
        sys.exit(f"setup.sh did not install with {installer}:\n{completed.stdout}")
    return seconds, completed.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--extras", default="validate", help="extras to install (default: validate)")
    args = parser.parse_args()
    uv_s, uv_log = cold_install("uv", args.extras)
    pip_s, _ = cold_install("pip", args.extras)
    used = next((line for line in uv_log.splitlines() if "installing with uv" in line), "")
    print(f"extras: {args.extras or '(none)'}; empty pip and uv caches, a fresh venv each")
    print(f"{used.removeprefix('shipml setup: ')}")
    print(f"cold install with pip:                 {pip_s:8.1f} s")
    print(f"cold install with uv (uv from PyPI too): {uv_s:6.1f} s")
    print(f"uv / pip:                              {uv_s / pip_s:8.2f}x   (target <= {TARGET_RATIO}x)")


if __name__ == "__main__":
    main()
