"""``shipml schema``: print the published JSON Schema of ``shipml.yaml``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from shipml.config import schema


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``schema`` subcommand."""
    parser = subparsers.add_parser(
        "schema", help="print the JSON Schema of shipml.yaml (for editors and validation)")
    parser.add_argument("--output", metavar="PATH", help="write to PATH instead of stdout")
    parser.set_defaults(handler=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Print or write the schema; return 0."""
    text = json.dumps(schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0
