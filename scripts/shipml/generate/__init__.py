"""Files generated from shipml's declarations (stage registry, option tables, JSON Schema): every
action's ``action.yml`` inputs and env lines, the reference pages of the docs site and each
action's README. One fact is written once; ``python -m shipml.generate`` writes every file that
repeats it, and ``python -m shipml.generate --check`` (run by the tests) fails when a checked-in
file differs from what the generators write.

Each generator module has ``generate(root: Path) -> dict[Path, str]``: the files it owns, by
path under ``root`` (the repository), with their whole text.
"""

from __future__ import annotations

import importlib
from pathlib import Path

#: the generator modules, in the order they run
GENERATORS: tuple[str, ...] = ("shipml.generate.actions", "shipml.generate.docs")


def generated(root: Path) -> dict[Path, str]:
    """Return every generated file under ``root`` with the text its generator writes."""
    files: dict[Path, str] = {}
    for name in GENERATORS:
        module = importlib.import_module(name)
        files.update(module.generate(root))
    return files


def stale(root: Path) -> list[Path]:
    """Return the generated files under ``root`` whose checked-in text differs (or is missing)."""
    return sorted(path for path, text in generated(root).items()
                  if not path.is_file() or path.read_text(encoding="utf-8") != text)


def write(root: Path) -> list[Path]:
    """Write every stale generated file under ``root``; return the paths written."""
    written = stale(root)
    files = generated(root)
    for path in written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
    return written
