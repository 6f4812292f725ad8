"""``shipml init``: write a starter ``shipml.yaml`` from a model and its data."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from shipml.errors import ConfigError

if TYPE_CHECKING:
    from shipml.onnx_model import OnnxModel

DEFAULT_OUTPUT = "shipml.yaml"
OUTPUT_IS_A_FOLDER = "--output: {output} is a folder; give the file to write, e.g. --output {example}"
LABEL_NAMES = ("label", "target", "y", "class", "outcome")
HEADER = """\
# shipml configuration: https://shipml.dev/schema/shipml.schema.json
# Written by `shipml init`; every key is documented by `shipml schema`.
"""


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``init`` subcommand."""
    parser = subparsers.add_parser(
        "init", help="write a starter shipml.yaml from a model and its data",
        description="Inspect an ONNX model and its data (inputs, label, task, categorical "
                    "columns) and write a starter shipml.yaml.")
    parser.add_argument("--model", required=True, metavar="PATH", help="the ONNX file")
    parser.add_argument("--train", required=True, metavar="PATH", help="training data")
    parser.add_argument("--test", metavar="PATH", help="test data (default: the training data)")
    parser.add_argument("--label", metavar="COLUMN", help="label column (default: detected)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, metavar="PATH",
                        help="where to write (default: shipml.yaml)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.set_defaults(handler=run_cli)


def starter_config(model_path: Path, train_path: Path, test_path: Path | None,
                   label: str | None, base: Path) -> dict[str, Any]:
    """Return the starter configuration for a model and its data.

    Raises ConfigError when the label cannot be found or the model does not match the data.
    """
    # pandas and onnxruntime load here, not when `shipml --help` builds the parser
    from shipml.binding import bind_model
    from shipml.data import load_table, require_label
    from shipml.onnx_model import OnnxModel

    model = OnnxModel(model_path, key="--model")
    table = load_table(train_path, "--train")
    if label is None:
        label = detect_label(model, table.columns, str(train_path))
    else:
        require_label(table, label, "--label")
    binding = bind_model(model, table, label=label)
    task, categorical, ignored = binding.task, binding.categorical, binding.unread
    model_section: dict[str, Any] = {
        "path": _relative(model_path, base),
        "task": task,
        "label": label,
        "train": _relative(train_path, base),
        "test": _relative(test_path or train_path, base),
    }
    if categorical:
        model_section["categorical_features"] = categorical
    if ignored:
        model_section["ignore_columns"] = ignored
    return {
        "model": model_section,
        "validate": {
            "suites": ["data_integrity", "train_test_validation", "model_evaluation"],
            "fail_on": "fail",
        },
    }


def detect_label(model: OnnxModel, columns: list[str], source: str) -> str:
    """Return the label column: the one column a per-column model does not read, or a usual name.

    Raises ConfigError listing the candidates when it cannot tell.
    """
    if model.layout == "columns":
        left = [c for c in columns if c not in model.input_names]
        if len(left) == 1:
            return left[0]
    for name in columns:
        if name.lower() in LABEL_NAMES:
            return name
    raise ConfigError(f"{source}: cannot tell which column is the label; pass --label "
                      f"(columns: {', '.join(columns)})")


def run_cli(args: argparse.Namespace) -> int:
    """Write the starter config; return 0, or raise ConfigError (exit 2).

    The output is checked, and a file beside it reserved, before the model is inspected; the
    config is written to that file and moved into place, so a failure leaves any old file as it
    was.
    """
    output = Path(args.output)
    reserved = reserve_output(output, force=args.force)
    try:
        base = output.resolve().parent
        document = starter_config(Path(args.model), Path(args.train),
                                  Path(args.test) if args.test else None, args.label, base)
        text = HEADER + yaml.safe_dump(document, sort_keys=False)
        try:
            reserved.write_text(text, encoding="utf-8")
            os.replace(reserved, output)
        except OSError as exc:
            raise ConfigError(f"--output: cannot write {output} ({exc.strerror or exc})") from None
    finally:
        reserved.unlink(missing_ok=True)
    section = document["model"]
    print(f"wrote {output}: {section['task']} model, label {section['label']!r}, "
          f"{len(section.get('categorical_features', []))} categorical feature(s)")
    print(f"next: shipml validate --config {output}")
    return 0


def reserve_output(output: Path, *, force: bool) -> Path:
    """Return a new empty file in ``output``'s folder (created if missing) that can replace it.

    Raises ConfigError naming ``--output`` when it is a folder or not a regular file, when it
    exists and ``force`` is false, or when its folder cannot be created or written to.
    """
    if output.is_dir():
        raise ConfigError(OUTPUT_IS_A_FOLDER.format(output=output,
                                                    example=output / DEFAULT_OUTPUT))
    if output.exists() and not output.is_file():
        raise ConfigError(f"--output: {output} is not a regular file; give a file path")
    if output.exists() and not force:
        raise ConfigError(f"--output: {output} already exists; pass --force to overwrite it")
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ConfigError(f"--output: cannot write {output}: {folder} "
                          f"({exc.strerror or exc})") from None
    os.close(handle)
    # mkstemp makes the file private; the config gets the mode a plain write would give it.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def _relative(path: Path, base: Path) -> str:
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(base))
    except ValueError:
        return str(resolved)
