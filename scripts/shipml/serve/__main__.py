"""``python -m shipml.serve``: the server's own entry point for images, the same flags as
``shipml serve`` without loading the other stages' commands (a faster start to ready)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shipml.errors import ShipmlError


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``shipml serve``'s flags and serve; return the exit code (2 bad configuration)."""
    from shipml.cli import common_options
    from shipml.serve.cli import register, run_cli

    parser = argparse.ArgumentParser(prog="python -m shipml.serve")
    subparsers = parser.add_subparsers(dest="command")
    register(subparsers, common_options())
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_cli(args)
    except ShipmlError as exc:
        print(f"shipml serve: {exc.message}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
