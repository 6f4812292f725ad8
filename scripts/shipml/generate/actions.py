"""Generated files: placeholder until the actions generator lands."""

from __future__ import annotations

from pathlib import Path


def generate(root: Path) -> dict[Path, str]:
    """Return the files this generator owns under ``root`` with their text (none yet)."""
    return {}
