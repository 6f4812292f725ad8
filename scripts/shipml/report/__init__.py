"""``shipml report``: stage results rendered once and published where people read them.

Reads only the stage-result contract (``.shipml/results/*.json``), never a stage's code. The
public names below are imported on first use, so that ``shipml --help`` does not load the
renderers and the GitHub client.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_EXPORTS = {
    "Report": "shipml.report.model",
    "build_report": "shipml.report.model",
    "marker": "shipml.report.model",
    "upsert_comment": "shipml.report.publish",
    "fit_comment": "shipml.report.render",
    "fit_summary": "shipml.report.render",
    "render_html": "shipml.report.render",
    "render_markdown": "shipml.report.render",
    "render_stage_summary": "shipml.report.render",
    "render_text": "shipml.report.render",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Return the public name ``name`` from the module that defines it."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shipml.report' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
