"""``shipml report``: stage results rendered once and published where people read them.

Reads only the stage-result contract (``.shipml/results/*.json``), never a stage's code.
"""

from __future__ import annotations

from shipml.report.model import Report, build_report, marker
from shipml.report.publish import upsert_comment
from shipml.report.render import (
    fit_comment,
    fit_summary,
    render_html,
    render_markdown,
    render_stage_summary,
    render_text,
)

__all__ = [
    "Report",
    "build_report",
    "fit_comment",
    "fit_summary",
    "marker",
    "render_html",
    "render_markdown",
    "render_stage_summary",
    "render_text",
    "upsert_comment",
]
