"""The canary's section tells why the model was rolled back: a result the canary itself wrote
(the engine driven through a rollback), rendered as the PR comment, the job summary and the
HTML page, each with the per-step table of every metric's canary and stable values."""

from __future__ import annotations

from shipml.canary import core
from shipml.report.model import build_report
from shipml.report.render import fit_comment, render_html, render_markdown, render_stage_summary
from shipml.results import StageClock, StageResult
from tests.canary.test_story import rolled_back

WHY = ("rolled back at step 2 (50%): quality — canary accuracy 0.871 vs stable 0.902, 3.1 points "
       "worse than stable — after 2 analyses, 2 failed")


def _result() -> StageResult:
    return core.stage_result(rolled_back(), StageClock(), None)


def test_the_comment_says_why_it_rolled_back_and_shows_every_metric_per_step() -> None:
    markdown = render_markdown(build_report([_result()]))
    assert f"| canary | ❌ fail | {WHY} |" in markdown
    assert ("| ❌ | step 2 at 50% traffic passed its analysis | 2 | — | rolled back: quality — "
            "canary accuracy 0.871 vs stable 0.902, 3.1 points worse than stable — 2 analyses, "
            "2 failed |") in markdown
    assert "| step | metric | verdict | canary | stable | figures | detail |" in markdown
    assert ("| 2: 50% | quality | fail | 0.871 | 0.902 | low -0.05, high -0.012, discordant 41, "
            "p_value 0.003, agreement 0.95 | canary accuracy 0.871 vs stable 0.902, 3.1 points "
            "worse than stable |") in markdown
    assert "| 2: 50% | 4xx-rate | pass | 0.001 | 0 |  | 0.001 ≤ 0.01 |" in markdown
    assert "| 2: 50% | p95-latency (ms) | pass | 8.2 | 7.9 |" in markdown
    assert ("| 2 | 50 | 2 | 2 | 0 | 0 | 8.2 | fail | rolled back: quality — canary accuracy 0.871 "
            "vs stable 0.902, 3.1 points worse than stable |") in markdown
    # the failure comes before the tables
    assert markdown.index("| ❌ | step 2 at 50%") < markdown.index("**Promotion steps**")


def test_the_job_summary_and_the_html_page_carry_the_same_table() -> None:
    result = _result()
    assert "| 1: 20% | quality | pass | 0.9 | 0.902 |" in render_stage_summary(result)
    page = render_html(build_report([result]))
    assert "<caption>Analysis per step (the step&#39;s last analysis)</caption>" in page
    assert ("<td>2: 50%</td><td>quality</td><td>fail</td><td class=\"num\">0.871</td>"
            "<td class=\"num\">0.902</td><td>low -0.05, high -0.012, discordant 41, p_value "
            "0.003, agreement 0.95</td>") in page
    assert f"<p>{WHY}</p>" in page


def test_a_comment_cut_to_fit_still_says_why() -> None:
    body, report = fit_comment(build_report([_result()]), limit=1500)
    assert report.truncated and len(body) <= 1500
    assert WHY in body
