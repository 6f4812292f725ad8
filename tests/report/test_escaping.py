"""Every field a stage, a user or the environment wrote reaches the report as text: no HTML, no
forged marker, no link, mention, table break or mermaid syntax of its own."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from shipml.report import build_report, render_html, render_markdown, render_stage_summary
from shipml.report.model import Links, marker
from shipml.report.publish import is_marked
from shipml.report.render import md_text, mermaid_label
from shipml.results import (
    Artifact,
    Check,
    Column,
    Delta,
    Series,
    StageError,
    StageResult,
    Table,
)
from tests.report import pipelines

#: what an attacker (or an unlucky name) puts into every field
HOSTILE = ('x <!-- shipml-report:other --> <img src=x onerror=alert(1)> [link](http://evil) '
           '**bold** `code` a|b @octocat $x^2$ ~~gone~~ "quoted" ```\n# heading\r\n::warning::forged')


def hostile_result(stage: str = HOSTILE) -> StageResult:
    return StageResult(
        stage=stage, status="fail", summary=HOSTILE, started_at=pipelines.STARTED, duration_s=1.0,
        checks=(Check(HOSTILE, "fail", HOSTILE, HOSTILE, HOSTILE, HOSTILE),
                Check("plain", "warn", 1.0, 2.0, HOSTILE)),
        artifacts=(Artifact(HOSTILE, HOSTILE),),
        tables=(Table(HOSTILE, (Column(HOSTILE, HOSTILE, HOSTILE), Column("n", "n")),
                      ({HOSTILE: HOSTILE, "n": 1.5},)),),
        series=(Series(HOSTILE, HOSTILE, HOSTILE, (HOSTILE, "b"), (1.0, 2.0)),),
        deltas=(Delta(HOSTILE, 1.0, 2.0, HOSTILE),),
    )


def errored(stage: str = "latency") -> StageResult:
    return StageResult(stage, "error", HOSTILE, pipelines.STARTED, 0.0,
                       error=StageError("config", 2, HOSTILE))


def _gfm(markdown: str) -> str:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


@pytest.fixture
def markdown() -> str:
    report = build_report([hostile_result(), errored()], title=HOSTILE,
                          links=Links(run="https://ci.example/run (1)", artifacts="javascript:x"),
                          commit=HOSTILE)
    return render_markdown(report)


def test_the_marker_is_the_only_html_comment_and_it_starts_the_body(markdown: str) -> None:
    assert markdown.count("<!--") == 1
    assert markdown.startswith(marker("default") + "\n")
    assert is_marked(markdown, marker("default"))
    assert not is_marked(markdown, marker("other"))


def test_no_field_becomes_html_a_link_a_mention_or_emphasis(markdown: str) -> None:
    html = _gfm(markdown)
    assert "<img" not in html and 'href="http://evil"' not in html
    assert "javascript:" not in markdown  # only web links become links
    assert "<em>" not in html and "<del>" not in html and "<h1>" not in html
    assert html.count("<code>") == 1  # the report key in the footer; no hostile backticks
    # GitHub links no mention inside <pre> or a code block; elsewhere a zero-width space breaks it
    outside_pre = re.sub(r"<pre>.*?</pre>|```mermaid\n.*?```", "", markdown, flags=re.S)
    assert "@octocat" not in outside_pre and "@\u200boctocat" in outside_pre
    assert "\\$x^2\\$" in markdown  # no math
    strong = re.findall(r"<strong>(.*?)</strong>", html)
    assert all("bold" not in text.split("**")[0] or "**bold**" in text for text in strong)
    # the reader still sees the text as written
    assert "**bold**" in html and "[link](http://evil)" in html and "&lt;img src=x" in html


def test_tables_keep_their_shape_with_pipes_and_line_breaks_in_every_cell(markdown: str) -> None:
    html = _gfm(markdown)
    for table in re.findall(r"<table>.*?</table>", html, flags=re.S):
        header = len(re.findall(r"<th[ >]", table.split("</thead>")[0]))
        for row in re.findall(r"<tr>(.*?)</tr>", table.split("</thead>")[1], flags=re.S):
            assert len(re.findall(r"<td[ >]", row)) == header
    assert "\r" not in markdown


def test_the_error_message_keeps_its_lines_but_no_markup(markdown: str) -> None:
    block = markdown.split("<pre>", 1)[1].split("</pre>", 1)[0]
    assert block.splitlines()[0].startswith("x &lt;!-- shipml-report:other --&gt; &lt;img")
    assert "\n# heading\n::warning::forged" in block
    html = _gfm(markdown)
    assert "<pre>x &lt;!-- shipml-report:other --&gt;" in html


def test_mermaid_blocks_hold_only_quoted_one_line_labels(markdown: str) -> None:
    (chart,) = re.findall(r"```mermaid\n(.*?)```\n", markdown, flags=re.S)
    lines = chart.splitlines()
    assert lines[0] == "xychart-beta" and len(lines) == 5
    assert re.fullmatch(r'    title "[^"`<>\n]*"', lines[1])
    assert re.fullmatch(r'    x-axis "[^"`<>]*" \["[^"`<>]*", "b"\]', lines[2])
    assert re.fullmatch(r'    y-axis "[^"`<>]*" 0 --> 2', lines[3])
    assert lines[4] == "    line [1, 2]"
    assert mermaid_label('a"b`c<d>e\nf') == "a'b'c‹d›e f"


def test_the_html_page_escapes_every_field() -> None:
    page = render_html(build_report([hostile_result(), errored()], title=HOSTILE))
    assert "<img" not in page and "<!--" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_stage_summary_escapes_like_the_report() -> None:
    summary = render_stage_summary(hostile_result())
    assert "<!--" not in summary and "<img" not in summary
    assert summary.startswith("### ❌ x &lt;!-- shipml-report:other --&gt; &lt;img")


@pytest.mark.parametrize(("text", "escaped"), [
    ("dynamic_int8 _x_ *y*", "dynamic_int8 \\_x\\_ \\*y\\*"),
    ("# title", "\\# title"),
    ("- item", "\\- item"),
    ("1. first", "1\\. first"),
    ("---", "\\---"),
    ("> quote", "&gt; quote"),
    ("-0.5 ms", "-0.5 ms"),
    ("churn@sha256:3f1a", "churn@sha256:3f1a"),
    ("<!-- x -->", "&lt;!-- x --&gt;"),
    ("a\tb\n\nc\x1b[31m", "a b c \\[31m"),
])
def test_md_text_escapes_what_markdown_would_read(text: str, escaped: str) -> None:
    assert md_text(text) == escaped


def test_a_report_key_that_could_break_the_marker_is_refused() -> None:
    with pytest.raises(ValueError, match="report key"):
        build_report([pipelines.validate()], key="x --> <!-- shipml-report:y")
