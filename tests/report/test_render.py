"""Rendering: golden markdown, GFM well-formedness, charts, truncation, text and HTML."""

from __future__ import annotations

import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest
from markdown_it import MarkdownIt

from shipml import stages
from shipml.errors import ConfigError
from shipml.report import (
    build_report,
    fit_comment,
    render_html,
    render_markdown,
    render_stage_summary,
    render_text,
)
from shipml.report.model import Links, Report
from shipml.report.render import MAX_SUMMARY_BYTES
from shipml.results import Check, Column, Delta, Series, StageError, StageResult, Table
from tests.report import pipelines

GOLDEN = Path(__file__).parent / "golden"
LINKS = Links(run="https://github.com/octo/models/actions/runs/42",
              artifacts="https://github.com/octo/models/actions/runs/42#artifacts",
              full_report="https://github.com/octo/models/actions/runs/42#artifacts")
#: set SHIPML_UPDATE_GOLDEN=1 to rewrite the golden files after an intended change
UPDATE = os.environ.get("SHIPML_UPDATE_GOLDEN") == "1"


def report_of(name: str) -> Report:
    return build_report(getattr(pipelines, name)(), links=LINKS, commit="0123456789abcdef")


@pytest.mark.parametrize("name", ["passing", "failing", "partial"])
def test_markdown_matches_the_golden_file(name: str) -> None:
    markdown = render_markdown(report_of(name))
    golden = GOLDEN / f"{name}.md"
    if UPDATE:
        golden.write_text(markdown, encoding="utf-8")
    assert markdown == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "headline"), [
    ("passing", "## ✅ shipml: ready to ship: 6 of 6 stages passed"),
    ("failing", "## ❌ shipml: not ready to ship: 4 checks failed in validate, latency, canary"),
    ("partial", "## ⏳ shipml: no gate failed, but not every stage ran (skipped: canary)"),
])
def test_verdict_line_comes_right_after_the_marker(name: str, headline: str) -> None:
    lines = render_markdown(report_of(name)).splitlines()
    assert lines[0] == "<!-- shipml-report:default -->"
    assert lines[1] == headline


class _Balance(HTMLParser):
    """Checks that every opened tag is closed in order (void tags aside)."""

    VOID: ClassVar[set[str]] = {"br", "hr", "img", "input", "meta", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.counts: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


@pytest.mark.parametrize("name", ["passing", "failing", "partial"])
def test_gfm_rendering_has_well_formed_tables_and_details(name: str) -> None:
    report = report_of(name)
    markdown = render_markdown(report)
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)
    balance = _Balance()
    balance.feed(html)
    assert balance.problems == [] and balance.stack == []
    checked = sum(1 for s in report.sections if s.result.checks)
    assert balance.counts.get("details") == checked == markdown.count("<details>")
    # every table in the markdown became an HTML table: header row + separator row pairs
    separators = len(re.findall(r"^\|(?:-+:?|---:?|---)\|", markdown, flags=re.M))
    assert balance.counts.get("table") == separators > 0
    # each table row has as many cells as its header
    for table in re.findall(r"<table>.*?</table>", html, flags=re.S):
        header = len(re.findall(r"<th[ >]", table.split("</thead>")[0]))
        for row in re.findall(r"<tr>(.*?)</tr>", table.split("</thead>")[1], flags=re.S):
            assert len(re.findall(r"<td[ >]", row)) == header
    assert balance.counts.get("pre", 0) == markdown.count("```mermaid")


def test_latency_and_canary_charts_are_mermaid_xycharts() -> None:
    markdown = render_markdown(report_of("passing"))
    charts = re.findall(r"```mermaid\n(.*?)```", markdown, flags=re.S)
    titles = [re.search(r'title "(.*)"', chart).group(1) for chart in charts]  # type: ignore[union-attr]
    assert titles == ["Latency distribution, batch 1", "Latency distribution, batch 8",
                      "Canary traffic weight per step", "Canary error rate per step",
                      "Canary p95 latency per step"]
    canary_weight = charts[2]
    assert canary_weight.startswith("xychart-beta\n")
    assert 'x-axis "step" ["1: 10%", "2: 50%", "3: 100%"]' in canary_weight
    assert "bar [10, 50, 100]" in canary_weight
    assert "line [0.1, 0.2, 0.15]" in charts[3]
    for chart in charts:
        categories = re.search(r"x-axis \"[^\"]*\" \[(.*)\]", chart).group(1)  # type: ignore[union-attr]
        values = re.search(r"(?:line|bar) \[(.*)\]", chart).group(1)  # type: ignore[union-attr]
        assert categories.count(",") == values.count(",")


def test_baseline_deltas_show_direction_and_percentage() -> None:
    failing = render_markdown(report_of("failing"))
    assert "| p50 latency at batch 1 | 2.254 ms | 3.2 ms | ▲ +42.0% 🔴 worse (ratio CI 1.35–1.5) |" \
        in failing
    assert "| model size | 4.2 MB | 1.1 MB | ▼ -73.8% 🟢 better |" in render_markdown(
        report_of("passing"))


def test_a_change_inside_its_measurements_noise_is_never_marked_worse_or_better() -> None:
    # The comment once marked p50 3.1 -> 3.2 ms 🔴 worse while its own ratio CI held 1.
    result = StageResult("latency", "pass", "ok", pipelines.STARTED, 1.0, deltas=(
        Delta("p50 latency at batch 1", 3.1, 3.2, "ms", interval=(0.99, 1.06)),
        Delta("p50 latency at batch 8", 3.1, 3.0, "ms", interval=(0.9, 1.0)),
        Delta("p50 latency at batch 16", 3.0, 4.0, "ms", interval=(1.2, 1.4))))
    report = build_report([result])
    markdown = render_markdown(report)
    assert "| p50 latency at batch 1 | 3.1 ms | 3.2 ms | ▲ +3.2% ≈ within noise " \
           "(ratio CI 0.99–1.06) |" in markdown
    assert "| p50 latency at batch 8 | 3.1 ms | 3 ms | ▼ -3.2% ≈ within noise " \
           "(ratio CI 0.9–1) |" in markdown
    assert "| p50 latency at batch 16 | 3 ms | 4 ms | ▲ +33.3% 🔴 worse (ratio CI 1.2–1.4) |" \
        in markdown
    assert markdown.count("🔴 worse") == 1 and "🟢" not in markdown
    text = render_text(report)
    assert "p50 latency at batch 1: 3.1 -> 3.2 ms (+3.2%, within noise)" in text
    assert "p50 latency at batch 16: 3 -> 4 ms (+33.3%, worse)" in text
    html = render_html(report)
    assert html.count(" within noise") == 2 and html.count(" worse") == 1


def test_a_delta_in_its_stages_own_words_shows_them_with_its_verdict() -> None:
    note = "2.9 points worse [1.8, 4.0] at 95%, 61 discordant pairs (p=0.0003)"
    result = StageResult("validate", "fail", "ok", pipelines.STARTED, 1.0, deltas=(
        Delta("accuracy against origin/main:model.onnx", 0.941, 0.912, higher_is_better=True,
              interval=(0.9575, 0.9809), note=note),))
    markdown = render_markdown(build_report([result]))
    shown = note.replace("[", "\\[").replace("]", "\\]")  # brackets escaped for GFM
    assert f"| accuracy against origin/main:model.onnx | 0.941 | 0.912 | {shown} 🔴 worse |" \
        in markdown
    assert f"{note} worse</td>" in render_html(build_report([result]))


def test_the_latency_p50_is_shown_once_table_and_baseline_row_agree() -> None:
    # The comment gave the candidate's p50 as 3.2 ms in the table and 4.4 ms against the
    # baseline: two measurements of one figure.
    markdown = render_markdown(report_of("failing"))
    table_row = re.search(r"\| 1 \| ([\d.]+) \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", markdown)
    delta_row = re.search(r"\| p50 latency at batch 1 \| [\d.]+ ms \| ([\d.]+) ms \|", markdown)
    assert table_row is not None and delta_row is not None
    assert table_row.group(1) == delta_row.group(1) == "3.2"


def test_html_lists_failures_first_then_warnings_then_the_rest() -> None:
    result = StageResult(
        "validate", "fail", "1 failed", pipelines.STARTED, 1.0,
        checks=(Check("first passing", "pass", 1.0, 2.0), Check("a warning", "warn", 3.0, 2.0),
                Check("second passing", "pass", 1.0, 2.0), Check("the failure", "fail", 9.0, 2.0),
                Check("an error", "error", "boom")),
        tables=(Table("Figures", (Column("x", "x"),), ({"x": 1},)),))
    html = render_html(build_report([result]))
    order = [html.index(name) for name in ("the failure", "an error", "a warning",
                                            "first passing", "second passing")]
    assert order == sorted(order)
    assert html.index("the failure") < html.index("<caption>Figures</caption>")


def test_sections_render_the_figures_a_stage_wrote_not_its_metrics() -> None:
    # Metrics shaped like latency's and canary's are data for machines: no table, no chart.
    legacy = StageResult("latency", "pass", "ok", pipelines.STARTED, 1.0,
                         {"batches": {"1": {"p50_ms": 1.0}}, "distribution": {"1": [[1, 0.5]]},
                          "steps": [{"weight": 10}]})
    assert "|---:|" not in render_markdown(build_report([legacy])).split("### ✅ latency")[1]
    figures = StageResult(
        "anything", "pass", "ok", pipelines.STARTED, 1.0,
        tables=(Table("Throughput", (Column("host", "host"), Column("rps", "rate", "req/s")),
                      ({"host": "a", "rps": 1200.5}, {"host": "b", "rps": None})),
                Table("no rows", (Column("x", "x"),), ())),
        series=(Series("drawn", "x", "y", ("a", "b"), (1.0, 2.0), "bar"),
                Series("not finite", "x", "y", ("a",), (math.nan,)),
                Series("lengths differ", "x", "y", ("a", "b"), (1.0,)),
                Series("empty", "x", "y", (), ())),
        deltas=(Delta("error rate", 0.02, 0.01, "%", interval=(0.4, 0.6)),
                Delta("accuracy", 0.9, 0.93, higher_is_better=True)))
    markdown = render_markdown(build_report([figures]))
    assert "**Throughput**\n\n| host | rate (req/s) |\n|---|---:|\n| a | 1200 |\n| b | — |\n" \
        in markdown
    assert "no rows" not in markdown
    assert markdown.count("```mermaid") == 1 and 'title "drawn"' in markdown
    assert "    bar [1, 2]\n" in markdown and 'y-axis "y" 0 --> 2\n' in markdown
    assert "| error rate | 0.02 % | 0.01 % | ▼ -50.0% 🟢 better (ratio CI 0.4–0.6) |" in markdown
    assert "| accuracy | 0.9 | 0.93 | ▲ +3.3% 🟢 better |" in markdown


def test_legacy_metrics_deltas_still_render_after_the_stages_deltas() -> None:
    result = StageResult("optimize", "pass", "ok", pipelines.STARTED, 1.0,
                         {"deltas": [{"name": "size", "baseline": 4, "candidate": 2, "unit": "MB"},
                                     {"name": "broken", "baseline": "x"}, "junk"]},
                         deltas=(Delta("p50", 2.0, 2.0, "ms"),))
    section = build_report([result]).sections[0]
    assert [d.name for d in section.deltas] == ["p50", "size"]
    markdown = render_markdown(build_report([result]))
    assert "| p50 | 2 ms | 2 ms | = no change |" in markdown
    assert "| size | 4 MB | 2 MB | ▼ -50.0% 🟢 better |" in markdown


def test_sections_follow_the_stage_registry_then_names() -> None:
    names = ["zeta", "latency", "alpha", "validate", "report", "optimize"]
    results = [StageResult(name, "pass", "", pipelines.STARTED, 0.0) for name in names]
    assert [s.name for s in build_report(results).sections] == [
        *(name for name in stages.names() if name in names), "alpha", "zeta"]


def test_a_negative_series_gets_an_axis_below_zero() -> None:
    result = StageResult("x", "pass", "", pipelines.STARTED, 0.0, series=(
        Series("change", "step", "%", ("a", "b"), (-3.0, 7.0)),))
    assert 'y-axis "%" -5 --> 10\n' in render_markdown(build_report([result]))


def test_a_config_error_is_not_ready_to_ship_with_its_message() -> None:
    message = ("shipml.yaml:3 latency.budgets.1.p95: unknown key; did you mean 'p95_ms'?\n"
               "    latency:\n      budgets:\n        \"1\": {p95_ms: 20}")
    error = StageResult("latency", "error", "configuration error", pipelines.STARTED, 0.0,
                        error=StageError("config", 2, message))
    report = build_report([pipelines.validate(), error], links=LINKS)
    assert report.verdict == "error"
    markdown = render_markdown(report)
    assert markdown.splitlines()[1] == ("## 💥 shipml: not ready to ship: latency stopped with a "
                                        "configuration error")
    assert ("💥 **latency stopped: configuration error** (exit 2)\n\n<pre>shipml.yaml:3 "
            "latency.budgets.1.p95: unknown key; did you mean 'p95_ms'?\n    latency:\n      "
            "budgets:\n        \"1\": {p95_ms: 20}</pre>\n") in markdown
    text = render_text(report)
    assert "    CONFIG ERROR (exit 2):\n      shipml.yaml:3 latency.budgets.1.p95" in text
    html = render_html(report)
    assert "<pre>shipml.yaml:3 latency.budgets.1.p95: unknown key; did you mean &#39;p95_ms&#39;?" \
        in html


def test_table_cells_escape_pipes_newlines_and_html() -> None:
    result = StageResult("validate", "fail", "a | b", pipelines.STARTED, 1.0, {}, (
        Check("name with | pipe", "fail", "x<script>", None, "two\nlines"),))
    markdown = render_markdown(build_report([result]))
    assert "| ❌ | name with \\| pipe | x&lt;script&gt; | — | two lines |" in markdown


def test_a_detail_that_repeats_the_observed_value_is_not_shown_twice() -> None:
    result = StageResult("validate", "fail", "s", pipelines.STARTED, 1.0, {}, (
        Check("same", "fail", "Found 7 unused features", 5, "Found 7 unused features"),
        Check("more", "fail", "Found 2 pairs…", 0.9, "Found 2 pairs: (a, b), (c, d)")))
    markdown = render_markdown(build_report([result]))
    assert "| ❌ | same | Found 7 unused features | 5 |  |" in markdown
    assert "| ❌ | more | Found 2 pairs… | 0.9 | Found 2 pairs: (a, b), (c, d) |" in markdown


def test_200_failures_fit_and_keep_every_failure_name() -> None:
    report = build_report(pipelines.big_failing(200), links=LINKS)
    assert len(render_markdown(report)) > 65536
    body, fitted = fit_comment(report)
    assert len(body) <= 65536 and fitted.truncated
    names = [c.name for c in report.sections[0].failures]
    assert len(names) == 100 and all(name in body for name in names)
    assert body.splitlines()[1].startswith("## ❌ shipml: not ready to ship: 100 checks failed")
    assert "[Full report](https://github.com/octo/models/actions/runs/42#artifacts)" in body


def test_truncation_shortens_passing_sections_first() -> None:
    report = report_of("failing")
    full = render_markdown(report)
    body, fitted = fit_comment(report, limit=len(full) - 1)
    assert len(body) < len(full)
    compact = [s.name for s in fitted.sections if s.compact]
    assert compact == ["optimize"]  # a passing stage goes first: the least to lose
    assert "### ❌ latency" in body and "```mermaid" in body


def test_truncation_falls_back_to_failure_names_then_to_as_many_as_fit() -> None:
    report = build_report(pipelines.big_failing(200), links=LINKS)
    body, fitted = fit_comment(report, limit=12000)
    assert fitted.names_only and len(body) <= 12000
    assert "### Failed checks (100)" in body
    assert all(c.name in body for c in report.sections[0].failures)
    assert "every failed check is named" in body
    body, fitted = fit_comment(report, limit=3000)
    assert len(body) <= 3000 and fitted.failure_limit is not None
    shown = [c.name for c in report.sections[0].failures if c.name in body]
    assert len(shown) == fitted.failure_limit > 5
    assert shown == [c.name for c in report.sections[0].failures][: len(shown)]
    assert (f"- …and {100 - len(shown)} more failed checks: "
            "[full report](https://github.com/octo/models/actions/runs/42#artifacts)") in body
    assert f"only the first {len(shown)} of 100 failed checks are named" in body
    # one name more would not have fitted
    one_more = report.with_compact([s.name for s in report.sections], names_only=True,
                                   failure_limit=len(shown) + 1)
    assert len(render_markdown(one_more)) > 3000


def test_a_hard_cut_keeps_the_marker_and_says_so() -> None:
    result = StageResult("validate", "fail", "word " * 1000, pipelines.STARTED, 1.0,
                         checks=(Check("c", "fail"),))
    body, _ = fit_comment(build_report([result], links=LINKS), limit=2000)
    assert len(body) <= 2000
    assert body.startswith("<!-- shipml-report:default -->\n## ❌")
    assert body.endswith("…cut to fit GitHub's comment limit; "
                         "[full report](https://github.com/octo/models/actions/runs/42#artifacts)\n")


def test_text_rendering_lists_problems_only() -> None:
    text = render_text(report_of("failing"))
    assert text.startswith("shipml: FAIL — not ready to ship")
    assert "    FAIL  accuracy on the test set is at least 0.9 (observed 0.81, threshold 0.9)" \
        in text
    assert "image size is below 800 MB" not in text  # passing checks stay out of the terminal
    assert "<" not in text.replace("<-", "")


def test_html_page_is_well_formed_and_escaped() -> None:
    result = StageResult("validate", "fail", "<b>bold</b>", pipelines.STARTED, 1.0, {},
                         (Check("x < y", "fail"),))
    page = render_html(build_report([result, *pipelines.passing()[1:]]))
    balance = _Balance()
    balance.feed(page)
    assert balance.problems == [] and balance.stack == []
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "x &lt; y" in page


def test_user_template_dir_overrides_one_template(tmp_path: Path) -> None:
    (tmp_path / "_footer.md.j2").write_text("custom footer for {{ report.key }}\n")
    markdown = render_markdown(report_of("passing"), tmp_path)
    assert markdown.endswith("custom footer for default\n")
    assert "### ✅ validate" in markdown  # the rest still comes from the package


def test_broken_user_template_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "report.md.j2").write_text("{{ report.nope }}\n")
    with pytest.raises(ConfigError, match=r"report template .*report.md.j2.*nope"):
        render_markdown(report_of("passing"), tmp_path)
    with pytest.raises(ConfigError, match="is not a folder"):
        render_markdown(report_of("passing"), tmp_path / "missing")


@pytest.mark.parametrize("result", [pipelines.latency(), pipelines.validate(False),
                                    pipelines.optimize(), pipelines.canary(False),
                                    StageResult("validate", "error", "stopped", pipelines.STARTED,
                                                0.0, error=StageError("internal", 3, "boom"))],
                         ids=["latency", "validate", "optimize", "canary", "error"])
def test_a_stage_summary_is_its_section_of_the_report(result: StageResult) -> None:
    summary = render_stage_summary(result)
    mark = {"fail": "❌", "pass": "✅", "error": "💥"}[result.status]
    assert summary.startswith(f"### {mark} {result.stage}\n")
    assert summary in render_markdown(build_report([result]))
    for table in result.tables:
        assert f"**{table.title}**" in summary
    assert summary.count("```mermaid") == len(result.series)
    if result.error:
        assert "<pre>boom</pre>" in summary


def test_a_huge_stage_summary_is_cut_under_githubs_step_limit() -> None:
    (result, _) = pipelines.big_failing(20_000)
    summary = render_stage_summary(result)
    assert 500_000 < len(summary.encode()) <= MAX_SUMMARY_BYTES
    assert summary.startswith("> [!NOTE]\n> Shortened to fit GitHub's job summary limit")
    assert summary.count("- **validate**: feature_") > 5000
    small = render_stage_summary(result, limit=5000)
    assert len(small.encode()) <= 5000 and "more failed checks: see report.md" in small


@pytest.mark.parametrize("limit", [40_000, 12_000, 3_000])
def test_shortened_comments_are_well_formed_markdown(limit: int) -> None:
    report = build_report(pipelines.big_failing(300), links=LINKS)
    body, fitted = fit_comment(report, limit=limit)
    assert fitted.truncated
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(body)
    balance = _Balance()
    balance.feed(html)
    assert balance.problems == [] and balance.stack == []
    # the note is a quote of its own, the stage table a table of its own
    assert re.search(r"<blockquote>\s*<p>\[!NOTE\]\s+Shortened[^<]*"
                     r"(<a [^>]*>Full report</a>.)?</p>\s*</blockquote>", html)
    assert html.count("<table>") >= 1 and "<hr />" in html
