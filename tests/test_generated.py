"""Every generated file (action inputs, reference pages, action READMEs) is what its generator
writes from the declarations: edit the declaration and run ``python -m shipml.generate``."""

from __future__ import annotations

from pathlib import Path

from shipml.generate import stale

REPO = Path(__file__).resolve().parents[1]


def test_every_generated_file_is_what_its_generator_writes() -> None:
    found = [str(path.relative_to(REPO)) for path in stale(REPO)]
    assert found == [], f"stale generated files {found}: run `python -m shipml.generate`"
