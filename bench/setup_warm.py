"""actions/setup twice in one fresh job: the cold install, then the warm reuse (target: warm <= 10 s).

Runs actions/setup/setup.sh the way the action's two `run:` steps do (plan, then install) in a
fresh RUNNER_TEMP, twice, and prints both wall times side by side with their ratio. The cold run
pip-installs this checkout with the extras into a new venv (PyPI, with pip's own cache); the warm
run must find the stamp and skip pip.

    python bench/setup_warm.py [--extras validate]
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


def run_setup(runner_temp: Path, extras: str) -> tuple[float, str]:
    """Run plan + install once; return the wall time in seconds and the install step's log."""
    env = {
        **{name: value for name, value in os.environ.items()
           if not name.startswith(("GITHUB_", "SHIPML_", "RUNNER_"))},
        "RUNNER_TEMP": str(runner_temp),
        "SHIPML_SETUP_EXTRAS": extras,
    }
    started = time.perf_counter()
    log = ""
    for phase in ("plan", "install"):
        output = runner_temp / f"output-{phase}"
        output.write_text("", encoding="utf-8")
        completed = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(SETUP_SCRIPT), phase],
            env={**env, "GITHUB_OUTPUT": str(output)}, capture_output=True, text=True, check=False,
        )
        if completed.returncode != 0:
            sys.exit(f"setup.sh {phase} failed ({completed.returncode}):\n{completed.stderr}")
        log = completed.stdout
    return time.perf_counter() - started, log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--extras", default="validate", help="extras to install (default: validate)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shipml-setup-bench-") as temp:
        cold_s, cold_log = run_setup(Path(temp), args.extras)
        warm_s, warm_log = run_setup(Path(temp), args.extras)
    if "installing shipml" not in cold_log:
        sys.exit(f"the first run did not install (was the temp folder fresh?):\n{cold_log}")
    if "reusing the cached venv" not in warm_log:
        sys.exit(f"the second run did not reuse the venv:\n{warm_log}")
    print(f"extras: {args.extras or '(none)'}")
    print(f"cold setup (fresh venv, pip install): {cold_s:8.2f} s")
    print(f"warm setup (venv reused, no pip):     {warm_s:8.2f} s   (target <= 10 s)")
    print(f"warm / cold:                          {warm_s / cold_s:8.4f}")


if __name__ == "__main__":
    main()
