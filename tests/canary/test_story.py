"""The story of a rollout: why it was promoted or rolled back, told once, in the result, the
report and ``shipml canary status``. The pure part drives the engine directly; the docker part
is a real rollback and a real promotion behind HAProxy, scraped by Prometheus, under load, with
the command's output read as act reads it (stdout and stderr in one stream)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from shipml.canary import core, engine
from shipml.canary.engine import Revision, RolloutState, Verdicts
from shipml.canary.judges import MetricResult, absolute
from shipml.canary.plan import Plan, Step
from shipml.results import StageClock, StageResult
from tests.canary.conftest import REPO, Load, Service, sample_rows

PLAN = Plan(steps=(Step(20, 0.0), Step(50, 0.0), Step(100, 0.0)), interval_s=1.0,
            failure_limit=2, min_requests=10, inconclusive="hold", step_timeout_s=12.0,
            window_s=1.0)
NEW, OLD = Revision("img@sha256:" + "b" * 64, "svc-new"), Revision("img@sha256:" + "a" * 64,
                                                                   "svc-old")


def quality(verdict: str, canary: float, stable: float) -> MetricResult:
    """A paired quality result as a label-aware judge gives it: values, interval, pairs."""
    points = (stable - canary) * 100
    return MetricResult("quality", "canary accuracy is not worse than stable's by more than 0.02",
                        verdict, canary, stable, 0.02,  # type: ignore[arg-type]
                        f"canary accuracy {canary:.3f} vs stable {stable:.3f}, {points:.1f} "
                        "points worse than stable", "ratio",
                        figures={"low": -0.05, "high": -0.012, "discordant": 41,
                                 "p_value": 0.003, "agreement": 0.95})


def analysis(verdict: str, canary: float) -> Verdicts:
    """One round: quality, error rate, 4xx rate and p95, every one judged."""
    error_rate = absolute("error-rate", 0.0, maximum=0.05)
    four_xx = MetricResult("4xx-rate", "canary 4xx rate is at most stable's + 0.01", "pass",
                           0.001, 0.0, 0.01, "0.001 ≤ 0.01", "ratio")
    p95 = MetricResult("p95-latency", "canary p95-latency is at most stable × 1.5", "pass",
                       8.2, 7.9, 31.85, "8.2 ms ≤ 31.85 ms (stable 7.9 ms × 1.5)", "ms")
    results = (quality(verdict, canary, 0.902), error_rate, four_xx, p95)
    return Verdicts(verdict, results, 0.0, 8.2)  # type: ignore[arg-type]


def rolled_back() -> RolloutState:
    """A rollout that passed step 1, then failed quality twice at step 2 (50%)."""
    state = engine.begin(PLAN, "svc", NEW, OLD, now=0.0).state
    state = engine.decide(PLAN, state, analysis("pass", 0.90), 1.0).state
    assert state.step == 1
    for now in (2.0, 3.0):
        state = engine.decide(PLAN, state, analysis("fail", 0.871), now).state
    assert state.phase == "rolled_back"
    return state


def test_the_result_of_a_rollback_says_why_with_every_metric_of_every_step() -> None:
    result = core.stage_result(rolled_back(), StageClock(), None)
    assert result.status == "fail"
    assert result.summary == (
        "rolled back at step 2 (50%): quality — canary accuracy 0.871 vs stable 0.902, 3.1 points "
        "worse than stable — after 2 analyses, 2 failed")
    steps = {check.name: check for check in result.checks if not check.group}
    failed = steps["step 2 at 50% traffic passed its analysis"]
    assert failed.status == "fail"
    assert failed.detail == ("rolled back: quality — canary accuracy 0.871 vs stable 0.902, 3.1 "
                             "points worse than stable — 2 analyses, 2 failed")
    assert steps["step 1 at 20% traffic passed its analysis"].detail == "1 analysis, 0 failed"
    tables = {table.title: table for table in result.tables}
    per_step = tables["Analysis per step (the step's last analysis)"]
    rows = [(row["step"], row["metric"], row["verdict"], row["canary"], row["stable"])
            for row in per_step.rows]
    assert rows == [
        ("1: 20%", "quality", "pass", 0.90, 0.902), ("1: 20%", "error-rate", "pass", 0.0, None),
        ("1: 20%", "4xx-rate", "pass", 0.001, 0.0), ("1: 20%", "p95-latency (ms)", "pass", 8.2, 7.9),
        ("2: 50%", "quality", "fail", 0.871, 0.902), ("2: 50%", "error-rate", "pass", 0.0, None),
        ("2: 50%", "4xx-rate", "pass", 0.001, 0.0), ("2: 50%", "p95-latency (ms)", "pass", 8.2, 7.9)]
    assert per_step.rows[4]["figures"] == ("low -0.05, high -0.012, discordant 41, p_value 0.003, "
                                           "agreement 0.95")
    assert [row["reason"] for row in tables["Promotion steps"].rows] == [
        "", "rolled back: quality — canary accuracy 0.871 vs stable 0.902, 3.1 points worse than "
            "stable"]
    stored = result.metrics["steps"][1]
    assert stored["failing"]["figures"]["discordant"] == 41
    assert [metric["name"] for metric in stored["metrics"]] == ["quality", "error-rate",
                                                                "4xx-rate", "p95-latency"]
    again = StageResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.tables == result.tables


def test_a_step_without_a_conclusive_analysis_reads_as_a_rollback_not_as_a_pass() -> None:
    # issue 19: 'FAIL step 1 at 20% traffic passed its analysis — 12 analyses, 0 failed'
    state = engine.begin(PLAN, "svc", NEW, OLD, now=0.0).state
    nothing = absolute("prediction-agreement", None, minimum=0.99,
                       why_missing="the canary answered 422: set model.features")
    for now in range(1, 13):
        state = engine.decide(PLAN, state, Verdicts("inconclusive", (nothing,), missing=True),
                              float(now)).state
    assert state.phase == "rolled_back"
    result = core.stage_result(state, StageClock(), None)
    (step,) = [check for check in result.checks if not check.group]
    assert step.status == "fail"
    assert step.detail == ("rolled back: no conclusive analysis within 12s (prediction-agreement "
                           "— no data: the canary answered 422: set model.features) — 12 "
                           "analyses, 0 failed, 12 inconclusive")
    assert result.summary.startswith("rolled back at step 1 (20%): no conclusive analysis")
    # the last analysis is kept in the state, so the result shows it without this run's rounds
    (last,) = [check for check in result.checks if check.group == "last analysis"]
    assert last.status == "warn" and "422" in last.detail


def test_the_action_output_gives_each_metric_its_value_and_verdict() -> None:
    from shipml.canary.analysis import AnalysisRound

    round_ = AnalysisRound(analysis("fail", 0.871).results, 40.0, 0.1)
    assert core.summary_of(round_) == ("quality 0.871 fail; error-rate 0 pass; 4xx-rate 0.001 pass; "
                                       "p95-latency 8.2 pass")


def test_status_names_the_promoted_canary_as_the_stable() -> None:
    from shipml.canary.cli import status_lines

    state = engine.begin(PLAN, "svc", NEW, OLD, now=0.0).state
    promoted = engine.command(PLAN, state, "promote", 1.0).state
    lines = status_lines(promoted, 3, 2, NEW)
    assert lines[:2] == ["shipml canary: svc: promoted at step 1/3, weight 100%",
                         f"  stable  svc-new ({NEW.image}), promoted by this rollout; before "
                         "it: svc-old"]
    assert not any(line.startswith("  canary") for line in lines)
    back = status_lines(rolled_back(), 3, 2, OLD)
    assert back[1:3] == [f"  canary  svc-new ({NEW.image}), rolled back",
                         f"  stable  svc-old ({OLD.image})"]
    assert "  step 2 (50%): fail, 2 analyses, 2 failed; rolled back: quality — canary accuracy " \
           "0.871 vs stable 0.902, 3.1 points worse than stable" in back
    # KServe's spec names the canary while it takes a share: the stable is still the state's
    moving = status_lines(state, 3, 2, NEW)
    assert moving[1:3] == [f"  canary  svc-new ({NEW.image})", f"  stable  svc-old ({OLD.image})"]
    assert not any("as its stable" in line for line in moving)
    # once ended, a target whose stable is not the state's says so
    assert f"  the target serves svc-old ({OLD.image}) as its stable" in status_lines(
        promoted, 3, 2, OLD)


# --- for real: docker, HAProxy, Prometheus, under load, read as act reads it --------------------


def _shipml(service: Service, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``shipml canary`` as the runner does: a process whose two streams are one."""
    return subprocess.run(
        [sys.executable, "-m", "shipml", "canary", *argv, "--config",
         str(service.folder / "shipml.yaml"), "--output-dir", str(service.folder / ".shipml")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, timeout=600,
        check=False)


def _result(service: Service) -> dict[str, Any]:
    return dict(json.loads((service.folder / ".shipml" / "results" / "canary.json").read_text()))


@pytest.mark.docker
@pytest.mark.slow
def test_a_rollback_and_a_promotion_tell_their_story_once(service: Service,
                                                          images: dict[str, str]) -> None:
    service.config(images["base"])
    first = _shipml(service)
    assert first.returncode == 0, first.stdout
    with Load(f"http://127.0.0.1:{service.port}", sample_rows(service.folder)):
        service.config(images["errors"])
        bad = _shipml(service)
        back = _result(service)
        service.config(images["good"])
        good = _shipml(service)
        promoted = _result(service)
    for run, result in ((first, None), (bad, back), (good, promoted)):
        decisions = result["metrics"]["decisions"] if result else [
            line for line in run.stdout.splitlines() if "first deploy" in line]
        assert decisions
        for line in decisions:
            assert run.stdout.splitlines().count(line) == 1, (line, run.stdout)
    assert bad.returncode == 1, bad.stdout
    assert back["summary"].startswith("rolled back at step 1 (20%): error-rate — "), back["summary"]
    (why,) = [step["reason"] for step in back["metrics"]["steps"] if step["status"] == "fail"]
    assert why.startswith("rolled back: error-rate — ") and " > 0.05" in why
    assert f"shipml canary: FAIL: {back['summary']}" in bad.stdout.splitlines()
    (failing,) = [step["failing"] for step in back["metrics"]["steps"] if step["failing"]]
    assert failing["name"] == "error-rate" and failing["canary"] > 0.05

    from shipml.report.model import build_report
    from shipml.report.render import render_html, render_markdown

    report = build_report([StageResult.from_dict(back)])
    markdown = render_markdown(report)
    assert "**Analysis per step (the step's last analysis)**" in markdown
    assert "| 1: 20% | error-rate | fail |" in markdown
    assert "<caption>Analysis per step (the step&#39;s last analysis)</caption>" in \
        render_html(report)

    assert good.returncode == 0, good.stdout
    assert promoted["metrics"]["phase"] == "promoted"
    new = promoted["metrics"]["revision"]
    status = _shipml(service, "status")
    assert status.returncode == 0, status.stdout
    lines = status.stdout.splitlines()
    assert lines[1].startswith(f"  stable  {new} ("), status.stdout
    assert "promoted by this rollout; before it: " in lines[1]
    assert not any(" as its stable" in line for line in lines), status.stdout
    assert json.loads(lines[-1])["phase"] == "promoted"


def test_a_decision_line_is_written_to_one_stream_only(
        capfd: pytest.CaptureFixture[str]) -> None:
    import logging

    # as shipml.cli.main sets logging up for every command: INFO and up on stderr
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
    runner = core.Runner(settings=None, target=None, providers={}, lines=[])  # type: ignore[arg-type]
    line = "canary svc step 1/3 weight 20%: error-rate=0 (0 ≤ 0.05) pass → pass: hold at 20%"
    runner.say(line)
    out, err = capfd.readouterr()
    assert (out + err).splitlines().count(line) == 1, (out, err)
    assert runner.lines == [line]
