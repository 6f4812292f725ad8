"""``python -m shipml.generate [--check]``: write (or check) every generated file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shipml.generate import stale, write

#: the repository root: scripts/shipml/generate/__main__.py → three folders up
ROOT = Path(__file__).resolve().parents[3]


def main(argv: list[str] | None = None) -> int:
    """Write the stale generated files (exit 0), or with ``--check`` list them (exit 1 if any)."""
    parser = argparse.ArgumentParser(prog="python -m shipml.generate", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming each file that differs")
    args = parser.parse_args(argv)
    if args.check:
        found = stale(ROOT)
        for path in found:
            print(f"stale: {path.relative_to(ROOT)} (run python -m shipml.generate)")
        return 1 if found else 0
    for path in write(ROOT):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
