"""Renderers of a :class:`~shipml.report.model.Report`: markdown, plain text and HTML.

All text comes from jinja2 templates shipped in ``shipml/report/templates``; a user template
directory, when given, is searched first, so any template (or only one partial) can be replaced.
"""

from __future__ import annotations

import functools
import html
import math
from pathlib import Path
from typing import Any

import jinja2

from shipml.errors import ConfigError
from shipml.report._github import MAX_COMMENT_CHARS
from shipml.report.model import Report, marker

MARKDOWN_TEMPLATE = "report.md.j2"
TEXT_TEMPLATE = "report.txt.j2"
HTML_TEMPLATE = "report.html.j2"

_STATUS_MARKS = {
    "pass": "✅", "fail": "❌", "error": "💥", "warn": "⚠️", "skipped": "⏭️",
    "incomplete": "⏳",
}


def environment(template_dir: Path | None = None, *, autoescape: bool = False) -> jinja2.Environment:
    """Return the jinja2 environment: the user's ``template_dir`` first, then the package's.

    Raises ConfigError when ``template_dir`` is not a folder.
    """
    if template_dir is not None and not template_dir.is_dir():
        raise ConfigError(f"report.template_dir: {template_dir} is not a folder")
    return _environment(template_dir, autoescape)


@functools.lru_cache(maxsize=8)
def _environment(template_dir: Path | None, autoescape: bool) -> jinja2.Environment:
    # Compiling the templates costs more than rendering them: keep one environment per folder.
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(template_dir)))
    loaders.append(jinja2.PackageLoader("shipml.report", "templates"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders), autoescape=autoescape, trim_blocks=True,
        lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
    )
    env.filters.update(cell=md_cell, num=number, mark=status_mark, pct=percent,
                       mermaid_label=mermaid_label, new_detail=new_detail)
    return env


def render(report: Report, template: str, template_dir: Path | None = None) -> str:
    """Return ``report`` rendered with ``template``; raise ConfigError on a broken user template."""
    env = environment(template_dir, autoescape=template.endswith(".html.j2"))
    try:
        return env.get_template(template).render(report=report, marker=marker(report.key))
    except jinja2.TemplateError as exc:
        where = f"{template_dir}/" if template_dir else ""
        line = getattr(exc, "lineno", None)
        raise ConfigError(
            f"report template {where}{getattr(exc, 'name', None) or template}"
            f"{f':{line}' if line else ''}: {exc}"
        ) from None


def render_markdown(report: Report, template_dir: Path | None = None) -> str:
    """Return the GitHub-flavoured markdown of ``report`` (comment and job summary)."""
    return render(report, MARKDOWN_TEMPLATE, template_dir)


def render_text(report: Report, template_dir: Path | None = None) -> str:
    """Return the plain-text rendering for terminals."""
    return render(report, TEXT_TEMPLATE, template_dir)


def render_html(report: Report, template_dir: Path | None = None) -> str:
    """Return a standalone HTML page (Jenkins publishHTML)."""
    return render(report, HTML_TEMPLATE, template_dir)


def fit_comment(report: Report, limit: int = MAX_COMMENT_CHARS,
                template_dir: Path | None = None) -> tuple[str, Report]:
    """Return markdown of at most ``limit`` characters and the report it was rendered from.

    Sections are shortened one by one (passing stages first, then the longest) to their
    failures; then only the verdict and the failure names remain; a note and the link to the
    full report say so. A last hard cut keeps the marker and ends with the note.
    """
    body = render_markdown(report, template_dir)
    if len(body) <= limit:
        return body, report
    by_priority = sorted(report.sections,
                         key=lambda s: (bool(s.failures), -len(s.result.checks)))
    compacted: list[str] = []
    current = report
    for section in by_priority:
        compacted.append(section.name)
        current = report.with_compact(compacted)
        body = render_markdown(current, template_dir)
        if len(body) <= limit:
            return body, current
    current = report.with_compact(compacted, names_only=True)
    body = render_markdown(current, template_dir)
    if len(body) <= limit:
        return body, current
    note = "\n\n…cut to fit GitHub's comment limit"
    if report.links.full_report:
        note += f"; [full report]({report.links.full_report})"
    note += "\n"
    cut = body[: max(limit - len(note), 0)]
    return cut[: cut.rfind("\n") + 1 or len(cut)] + note, current


def new_detail(check: Any) -> str:
    """Return a check's detail, or '' where it only repeats the observed value."""
    detail = str(check.detail or "")
    return "" if detail == str(check.observed) else detail


def md_cell(value: Any) -> str:
    """Return ``value`` safe inside a markdown table cell: pipes escaped, one line, no HTML."""
    text = number(value) if isinstance(value, float) or value is None else str(value)
    text = html.escape(text, quote=False).replace("|", "\\|")
    return " ".join(text.split())


def number(value: Any, digits: int = 4) -> str:
    """Return a number with ``digits`` significant digits; '—' for none."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:.{digits}g}"
    return str(value)


def status_mark(status: str) -> str:
    """Return the emoji that marks ``status``."""
    return _STATUS_MARKS.get(status, "❔")


def percent(value: float) -> str:
    """Return a signed percentage, e.g. ``+3.2%``."""
    return f"{value:+.1f}%"


def mermaid_label(value: Any) -> str:
    """Return text safe inside a double-quoted mermaid label."""
    return str(value).replace('"', "'").replace("\n", " ")
