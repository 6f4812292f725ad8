"""Alerting against the GitHub stand-in: one issue per model key, found by its hidden marker and
updated in place; a comment when the state changes; closed (or left) when drift clears; a
repository_dispatch with the documented body; nothing posted under act."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shipml.cli import main
from shipml.results import StageResult
from tests.monitor.conftest import LABEL, SHIFTED, copy_example, shifted, write_config
from tests.monitor.fake_issues import FakeIssues
from tests.report.conftest import TOKEN
from tests.report.fake_github import Raw

pytestmark = pytest.mark.deepchecks

MARKER = "<!-- shipml-monitor:churn -->"
#: what a proxy or GitHub's outage page answers with 200: not the JSON the API documents
HTML = Raw(b"<!DOCTYPE html>\n<html><head><title>Unicorn! &middot; GitHub</title></head>"
           b"<body><p>No server is currently available to service your request.</p></body></html>")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The example with a clean and a shifted table of production rows."""
    folder = copy_example(tmp_path / "project")
    test = pd.read_csv(folder / "test.csv").drop(columns=[LABEL])
    test.to_csv(folder / "clean.csv", index=False)
    shifted(test, pd.read_csv(folder / "train.csv")).to_csv(folder / "shifted.csv", index=False)
    return folder


def _run(project: Path, production: str, **alert: Any) -> int:
    write_config(project, {"key": "churn", "production": production,
                           "alert": {"labels": ["shipml-monitor", "drift"], **alert}})
    return main(["monitor", "--config", str(project / "shipml.yaml"),
                 "--output-dir", str(project / ".shipml")])


def _result(project: Path) -> StageResult:
    return StageResult.read(project / ".shipml" / "results" / "monitor.json")


def test_ten_drifted_runs_leave_one_issue_updated_and_a_clean_run_closes_it(
        project: Path, on_github: FakeIssues) -> None:
    github = on_github
    for _ in range(10):
        assert _run(project, "shifted.csv") == 1
    assert list(github.issues) == [1]
    issue = github.issues[1]
    assert issue["state"] == "open"
    assert issue["title"] == "shipml monitor: drift in churn"
    assert [label["name"] for label in issue["labels"]] == ["shipml-monitor", "drift"]
    assert issue["body"].startswith(MARKER + "\n<!-- shipml-monitor-state:drift -->\n")
    for name in SHIFTED:
        assert f"`{name}`" in issue["body"]
    assert "https://github.com/octo/models/actions/runs/77" in issue["body"]
    assert len([r for r in github.requests_of("POST") if r.path.endswith("/issues")]) == 1
    assert len([r for r in github.requests_of("PATCH") if r.path.endswith("/issues/1")]) == 9
    assert github.bodies(1) == []  # the same state: updated in place, no comment
    for request in github.requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert _result(project).metrics["alert"]["issue_url"] == \
        "https://github.com/octo/models/issues/1"

    assert _run(project, "clean.csv") == 0
    assert issue["state"] == "closed" and issue["state_reason"] == "completed"
    assert issue["body"].split("\n")[1] == "<!-- shipml-monitor-state:clear -->"
    [comment] = github.bodies(1)
    assert comment.startswith("**Drift cleared** in `churn`")
    # clean again: nothing more to say
    assert _run(project, "clean.csv") == 0
    assert len(github.bodies(1)) == 1

    # drift returns: the same issue, reopened, with a comment
    assert _run(project, "shifted.csv") == 1
    assert list(github.issues) == [1] and issue["state"] == "open"
    assert github.bodies(1)[-1].startswith("**Drift is back** in `churn`")


def test_leave_on_clear_comments_and_keeps_it_open(project: Path, on_github: FakeIssues) -> None:
    assert _run(project, "shifted.csv", on_clear="leave") == 1
    assert _run(project, "clean.csv", on_clear="leave") == 0
    issue = on_github.issues[1]
    assert issue["state"] == "open"
    assert on_github.bodies(1)[0].startswith("**Drift cleared**")
    assert _run(project, "shifted.csv", on_clear="leave") == 1
    assert on_github.bodies(1)[-1].startswith("**Drift is back**")


def test_another_key_gets_its_own_issue_and_a_human_issue_is_left_alone(
        project: Path, on_github: FakeIssues) -> None:
    human = on_github._create({"title": "question", "body": f"> {MARKER}\nwhy?",
                               "labels": ["shipml-monitor"]})
    assert _run(project, "shifted.csv") == 1
    write_config(project, {"key": "fraud", "production": "shifted.csv"})
    assert main(["monitor", "--config", str(project / "shipml.yaml"),
                 "--output-dir", str(project / ".shipml")]) == 1
    assert len(on_github.issues) == 3
    assert on_github.issues[human["number"]]["body"] == f"> {MARKER}\nwhy?"
    assert on_github.issues[3]["body"].startswith("<!-- shipml-monitor:fraud -->")


def test_repository_dispatch_has_the_documented_body_once_per_drift(
        project: Path, on_github: FakeIssues) -> None:
    dispatch = {"event_type": "shipml-retrain", "payload": {"team": "ml-platform"}}
    assert _run(project, "shifted.csv", dispatch=dispatch) == 1
    assert _run(project, "shifted.csv", dispatch=dispatch) == 1  # the same episode: not again
    [sent] = on_github.dispatches
    [request] = [r for r in on_github.requests if r.path == "/repos/octo/models/dispatches"]
    assert request.method == "POST" and request.body == sent
    payload = sent["client_payload"]
    assert sent["event_type"] == "shipml-retrain"
    assert list(payload) == ["model", "version", "drifted_features", "failed_checks", "issue",
                             "run", "records", "window", "team"]
    assert payload["model"] == "churn"
    assert sorted(payload["drifted_features"]) == sorted(SHIFTED)
    assert any("Feature Drift" in name for name in payload["failed_checks"])
    assert payload["issue"] == "https://github.com/octo/models/issues/1"
    assert payload["run"] == "https://github.com/octo/models/actions/runs/77"
    assert payload["records"] == 171
    assert payload["window"] == {"since": None, "until": None}
    assert payload["team"] == "ml-platform"
    # every run: one per drifted run
    assert _run(project, "shifted.csv", dispatch={**dispatch, "on": "every"}) == 1
    assert len(on_github.dispatches) == 2


def test_a_payload_field_shipml_sets_is_refused(project: Path, on_github: FakeIssues,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = _run(project, "shifted.csv", dispatch={"event_type": "x", "payload": {"model": "y"}})
    assert code == 2
    assert "monitor.alert.dispatch.payload: model are fields shipml sets" in capsys.readouterr().err
    assert on_github.issues == {}
    assert _result(project).status == "fail"  # the verdict stands beside the alerting error


def test_github_down_is_an_infrastructure_error_after_the_result_is_written(
        project: Path, on_github: FakeIssues, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    on_github.script("GET", r"/repos/octo/models/issues", 503, {"message": "down"}, times=10)
    assert _run(project, "shifted.csv") == 3
    err = capsys.readouterr().err
    assert "the alert was not delivered: GitHub API at" in err and "unreachable" in err
    assert TOKEN not in err
    result = _result(project)
    assert result.status == "fail"  # the drift verdict stands
    assert "unreachable" in result.metrics["alert"]["error"]


def _verdict_kept(project: Path, err: str) -> None:
    assert "the alert was not delivered: " in err
    assert "internal error" not in err and TOKEN not in err
    result = _result(project)
    assert result.status == "fail" and result.error is None  # the drift verdict stands
    assert result.summary.startswith("drift in 3 of 11 features")
    assert result.metrics["alert"]["error"] and TOKEN not in result.metrics["alert"]["error"]
    assert result.metrics["alert"]["error_exit_code"] == 3


@pytest.mark.parametrize("method", ["GET", "POST"], ids=["listing the issues", "opening one"])
def test_an_html_answer_from_github_keeps_the_verdict(
        project: Path, on_github: FakeIssues, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], method: str) -> None:
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    on_github.script(method, r"/repos/octo/models/issues", 200, HTML, times=10)
    assert _run(project, "shifted.csv") == 3
    _verdict_kept(project, capsys.readouterr().err)


def test_any_failure_of_the_alerting_step_keeps_the_verdict(
        project: Path, github: FakeIssues, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Under act the plan is written to .shipml/monitor/alert.json: a folder there makes that
    # fail with an error no part of shipml raises on purpose.
    monkeypatch.setenv("ACT", "true")
    monkeypatch.setenv("GITHUB_REPOSITORY", github.repository)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    (project / ".shipml" / "monitor" / "alert.json").mkdir(parents=True)
    assert _run(project, "shifted.csv") == 3
    err = capsys.readouterr().err
    _verdict_kept(project, err)
    assert "the alerting step failed (IsADirectoryError: " in err
    assert "alert.json" in _result(project).metrics["alert"]["error"]


def test_without_a_token_the_fix_is_named(project: Path, on_github: FakeIssues,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    assert _run(project, "shifted.csv") == 2
    assert "issues: write" in capsys.readouterr().err
    assert on_github.requests == []


def test_under_act_nothing_is_posted_and_the_plan_is_written(
        project: Path, github: FakeIssues, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ACT", "true")
    monkeypatch.setenv("GITHUB_API_URL", github.base_url)
    monkeypatch.setenv("GITHUB_REPOSITORY", github.repository)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    assert _run(project, "shifted.csv", dispatch={"event_type": "shipml-retrain"}) == 1
    assert github.requests == []
    plan = json.loads((project / ".shipml" / "monitor" / "alert.json").read_text("utf-8"))
    assert plan["platform"] == "act" and plan["repository"] == "octo/models"
    assert plan["issue"]["body"].startswith(MARKER)
    assert plan["repository_dispatch"]["request"] == "POST /repos/octo/models/dispatches"
    assert plan["repository_dispatch"]["body"]["event_type"] == "shipml-retrain"
    assert "dry run (act): would open or update the issue of churn in octo/models and send " \
           "repository_dispatch shipml-retrain" in capsys.readouterr().out
