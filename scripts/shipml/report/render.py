"""Renderers of a :class:`~shipml.report.model.Report`: markdown, plain text and HTML.

All text comes from jinja2 templates shipped in ``shipml/report/templates``; a user template
directory, when given, is searched first, so any template (or only one partial) can be replaced.

Every field a stage, a user or the environment wrote passes an escaping filter before it reaches
the markdown: ``cell``/``md`` (one line, HTML and markdown syntax escaped, so no ``<!--``, link,
mention or table break can be forged), ``pre`` (HTML-escaped text kept in lines),
``mermaid_label`` and ``url``. The HTML page is autoescaped; the text rendering keeps one line
per field and no control characters.
"""

from __future__ import annotations

import functools
import html
import math
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import jinja2

from shipml.errors import ConfigError
from shipml.github import MAX_COMMENT_CHARS
from shipml.report.model import (
    Report,
    axis_range,
    build_report,
    improvement,
    marker,
    numeric_column,
    percent_change,
    within_noise,
)
from shipml.results import StageResult

MARKDOWN_TEMPLATE = "report.md.j2"
TEXT_TEMPLATE = "report.txt.j2"
HTML_TEMPLATE = "report.html.j2"
#: one stage's section alone: the job summary of a single stage's step
STAGE_SUMMARY_TEMPLATE = "stage_summary.md.j2"

#: GitHub keeps at most 1 MiB of job summary per step ("Step isolation and limits" in
#: https://docs.github.com/actions/using-workflows/workflow-commands-for-github-actions
#: #adding-a-job-summary); a larger one is not shown at all. Measured in UTF-8 bytes.
MAX_SUMMARY_BYTES = 1024 * 1024
#: what cuts a failure name too long for its share of the comment or summary
ELLIPSIS = "…"
#: a failure name is never cut shorter than this (measured): fewer names are named instead
MIN_NAME_ROOM = 80

Measure = Callable[[str], int]

_STATUS_MARKS = {
    "pass": "✅", "fail": "❌", "error": "💥", "warn": "⚠️", "skipped": "⏭️",
    "incomplete": "⏳",
}
#: markdown punctuation that could start emphasis, code, links, tables, strikethrough or math
#: (``_`` inside a word, as in ``dynamic_int8``, cannot: it stays readable)
_MD_SPECIAL = re.compile(r"([\\`*\[\]|~$]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
#: an ``@`` that GitHub would read as a mention
_MENTION = re.compile(r"(?<![A-Za-z0-9])@")
#: text with none of these is literal markdown as it is
_MAYBE_MARKUP = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029&<>\\`*_\[\]|~$@]|^[\s#>+=\d-]|\s$|\s\s")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


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
    env.filters.update(cell=md_cell, md=md_text, pre=pre_text, line=one_line, url=md_url,
                       num=number, mark=status_mark, pct=percent, change=percent_change,
                       improvement=improvement, noise=within_noise, axis=axis_range,
                       numeric=numeric_column,
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


def render_stage_summary(result: StageResult, limit: int = MAX_SUMMARY_BYTES) -> str:
    """Return the job-summary markdown of one stage: its section rendered exactly as the report
    renders it (checks, error, tables, charts, deltas), cut like the report to ``limit`` UTF-8
    bytes (GitHub's per-step limit by default). Every stage's command calls this one renderer."""
    report = build_report([result])
    body, _ = fit(report, limit, template=STAGE_SUMMARY_TEMPLATE, measure=utf8_size,
                  limit_name="job summary")
    return body


def fit_comment(report: Report, limit: int = MAX_COMMENT_CHARS,
                template_dir: Path | None = None) -> tuple[str, Report]:
    """Return the comment markdown in at most ``limit`` characters and the report it was
    rendered from (see :func:`fit`)."""
    return fit(report, limit, template_dir=template_dir, measure=len, limit_name="comment")


def fit_summary(report: Report, limit: int = MAX_SUMMARY_BYTES,
                template_dir: Path | None = None, *, rendered: str | None = None
                ) -> tuple[str, Report]:
    """Return the job-summary markdown in at most ``limit`` UTF-8 bytes and the report it was
    rendered from (see :func:`fit`)."""
    return fit(report, limit, template_dir=template_dir, measure=utf8_size,
               limit_name="job summary", rendered=rendered)


def fit(report: Report, limit: int, *, template: str = MARKDOWN_TEMPLATE,
        template_dir: Path | None = None, measure: Measure = len,
        limit_name: str = "comment", rendered: str | None = None) -> tuple[str, Report]:
    """Return markdown whose ``measure`` is at most ``limit``, and the report it came from.

    Sections are shortened one by one (passing stages first, then the longest) to their
    failures; then only the verdict and the failure names remain, as many names as fit, with
    how many more there are and the link to the full report. A last hard cut (when even the
    headline and the stage table do not fit) keeps the marker and ends with a note.
    ``rendered``: the full rendering, when the caller has it already.
    """
    def draw(candidate: Report) -> str:
        return render(candidate, template, template_dir)

    body = draw(report) if rendered is None else rendered
    if measure(body) <= limit:
        return body, report
    by_priority = sorted(report.sections,
                         key=lambda s: (bool(s.failures), -len(s.result.checks)))
    compacted: list[str] = []
    current = report
    # The failure names alone bound every shortened rendering from below: when they cannot
    # fit, compacting section by section only costs renderings.
    if sum(measure(check.name) for _, check in report.failures) < limit:
        for section in by_priority:
            compacted.append(section.name)
            current = report.with_compact(compacted, limit_name=limit_name)
            body = draw(current)
            if measure(body) <= limit:
                return body, current
    compacted = [section.name for section in by_priority]
    current = report.with_compact(compacted, names_only=True, limit_name=limit_name)
    body = draw(current)
    if measure(body) <= limit:
        return body, current
    # As many failure names as fit, each cut to its share of the room the rest leaves (a long
    # name is cut with an ellipsis, never dropped): the rendering grows with each name, so
    # bisect on how many are named.
    skeleton = draw(report.with_compact(compacted, names_only=True, failure_limit=0,
                                        limit_name=limit_name))
    room = limit - measure(skeleton)
    escape = environment(template_dir).filters["cell"]

    def named(count: int) -> Report:
        share = max(room // count - _line_overhead(report, measure, escape), MIN_NAME_ROOM)
        clipped = clip_failure_names(report, count, share, measure, escape)
        return clipped.with_compact(compacted, names_only=True, failure_limit=count,
                                    limit_name=limit_name)

    low, high = 1, len(report.failures)
    best: tuple[str, Report] | None = None
    while low <= high:
        middle = (low + high) // 2
        candidate = named(middle)
        text = draw(candidate)
        if measure(text) <= limit:
            best = (text, candidate)
            low = middle + 1
        else:
            high = middle - 1
    if best is not None:
        return best
    current = report.with_compact(compacted, names_only=True, failure_limit=0,
                                  limit_name=limit_name)
    return _hard_cut(draw(current), report, limit, measure, limit_name), current


def clip_failure_names(report: Report, count: int, room: int, measure: Measure,
                       escape: Callable[[str], str] = str) -> Report:
    """Return ``report`` with each of its first ``count`` failure names that takes more than
    ``room`` (``measure`` of its ``escape``d form) cut to fit there, ending with ``…``; the
    report counts how many were cut (``clipped_names``)."""
    clipped = 0
    seen = 0
    sections = []
    for section in report.sections:
        failures = []
        for check in section.failures:
            seen += 1
            name = check.name
            if seen <= count and measure(escape(name)) > room:
                name = _clip(name, room, measure, escape)
                clipped += 1
            failures.append(check if name == check.name else replace(check, name=name))
        sections.append(replace(section, failures=tuple(failures)))
    return replace(report, sections=tuple(sections), clipped_names=clipped)


def _clip(text: str, room: int, measure: Measure, escape: Callable[[str], str]) -> str:
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits with its ellipsis
        middle = (low + high + 1) // 2
        if measure(escape(text[:middle] + ELLIPSIS)) <= room:
            low = middle
        else:
            high = middle - 1
    return text[:low] + ELLIPSIS


def _line_overhead(report: Report, measure: Measure, escape: Callable[[str], str]) -> int:
    # What a failure's line costs beside its name: "- **stage**: " and the line break.
    longest = max((escape(stage) for stage, _ in report.failures), key=measure, default="")
    return measure(f"- **{longest}**: \n")


def _hard_cut(body: str, report: Report, limit: int, measure: Measure, limit_name: str) -> str:
    note = f"\n\n…cut to fit GitHub's {limit_name} limit"
    if report.links.full_report:
        note += f"; [full report]({md_url(report.links.full_report)})"
    note += "\n"
    room = limit - measure(note)
    low, high = 0, len(body)
    while low < high:  # the longest prefix that fits
        middle = (low + high + 1) // 2
        if measure(body[:middle]) <= room:
            low = middle
        else:
            high = middle - 1
    cut = body[:low]
    return cut[: cut.rfind("\n") + 1 or len(cut)] + note


def utf8_size(text: str) -> int:
    """Return the size of ``text`` in UTF-8 bytes."""
    return len(text.encode("utf-8"))


def new_detail(check: Any) -> str:
    """Return a check's detail, or '' where it only repeats the observed value."""
    detail = str(check.detail or "")
    return "" if detail == str(check.observed) else detail


def md_cell(value: Any) -> str:
    """Return ``value`` safe inside a markdown table cell or a line of text: numbers formatted,
    see :func:`md_text` for the escaping."""
    text = number(value) if isinstance(value, (float, bool)) or value is None else str(value)
    return md_text(text)


def md_text(value: Any) -> str:
    """Return ``value`` as one line of literal markdown text: whitespace and control characters
    folded to single spaces; ``&``, ``<`` and ``>`` as HTML entities (so no tag and no ``<!--``
    comment); backslash before the characters of emphasis, code, links, tables, strikethrough
    and math; a block marker at the start escaped; ``@`` kept from mentioning anyone."""
    text = str(value)
    # Shortening a long report renders the same names again and again: cache the short ones.
    return _md_text_cached(text) if len(text) < 512 else _md_text(text)


def _md_text(value: str) -> str:
    if not _MAYBE_MARKUP.search(value):
        return value
    text = " ".join(_CONTROL.sub(" ", str(value)).split())
    text = html.escape(text, quote=False)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _MENTION.sub("@\u200b", text)  # a zero-width space: @team in a name pings no one
    if re.match(r"[#>]|[-+=]+$|[-+] ", text):
        text = "\\" + text
    numbered = re.match(r"(\d{1,9})([.)])( |$)", text)
    if numbered:
        text = f"{numbered.group(1)}\\{text[len(numbered.group(1)):]}"
    return text


_md_text_cached = functools.lru_cache(maxsize=1 << 15)(_md_text)


def pre_text(value: Any) -> str:
    """Return ``value`` for inside ``<pre>…</pre>``: HTML-escaped, lines kept, other control
    characters dropped."""
    return html.escape(_CONTROL_BUT_NEWLINE.sub("", str(value).replace("\r\n", "\n")),
                       quote=False)


def one_line(value: Any) -> str:
    """Return ``value`` on one line without control characters (terminal and log output)."""
    return " ".join(_CONTROL.sub(" ", str(value)).split())


def md_url(value: Any) -> str:
    """Return a URL safe inside ``[text](url)``: spaces, brackets, quotes and parentheses
    percent-encoded."""
    return urllib.parse.quote(str(value), safe=":/?#@!$&'*+,;=%~-._")


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
    """Return text safe inside a double-quoted mermaid label in a fenced block: one line, no
    double quote, backtick or angle bracket."""
    text = one_line(value).replace('"', "'").replace("`", "'")
    return text.replace("<", "‹").replace(">", "›")
