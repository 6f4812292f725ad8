"""``shipml schema``: print the published JSON Schema of ``shipml.yaml``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from shipml.config import schema
from shipml.errors import ConfigError


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
        target = Path(args.output)
        if target.is_dir():
            raise ConfigError(f"--output: {target} is a folder; name the file to write, e.g. "
                              f"{target / 'shipml.schema.json'}")
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--output: cannot write {target}: {exc.strerror or exc}") from None
    else:
        print(text, end="")
    return 0
