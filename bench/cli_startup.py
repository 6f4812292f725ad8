"""CLI start-up: ``shipml --help`` of this checkout against an earlier commit, side by side.

The earlier commit is checked out into a temporary git worktree and run with the same Python and
the same installed dependencies (``PYTHONPATH`` points at its ``scripts/``), so the only
difference is shipml's own code. Runs alternate (old, new, old, new, ...) so that a noisy minute
on the machine hits both alike; prints the medians and their ratio.

    python bench/cli_startup.py [--base 11ad3aa] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELP = "import sys; from shipml.cli import main; sys.argv = ['shipml', '--help']; main()"


def time_help(scripts: Path) -> float:
    """Return the wall time in seconds of one ``shipml --help`` with shipml from ``scripts``."""
    env = {**os.environ, "PYTHONPATH": str(scripts)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", HELP], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> int:
    """Print the median start-up of both versions and the ratio new/old."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="11ad3aa", help="the earlier commit (default: before issue 8)")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        worktree = Path(folder) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree),
                        args.base], check=True, capture_output=True)
        try:
            old_times, new_times = [], []
            time_help(worktree / "scripts")  # fill the page cache for both before timing
            time_help(REPO / "scripts")
            for _ in range(args.runs):
                old_times.append(time_help(worktree / "scripts"))
                new_times.append(time_help(REPO / "scripts"))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)],
                           check=False, capture_output=True)
    old, new = statistics.median(old_times), statistics.median(new_times)
    print(f"shipml --help, median of {args.runs} alternating runs")
    print(f"  {args.base:>10}: {old:.3f} s")
    print(f"  {'this tree':>10}: {new:.3f} s")
    print(f"  ratio this/base: {new / old:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
