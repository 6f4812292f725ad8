"""The drift issue is the marker *and* its author, the token's own account: an issue anyone else
opened with the same first line is never updated, reopened, commented on or closed. Against the
GitHub stand-in, as the GITHUB_TOKEN of GitHub Actions (``github-actions[bot]``, which may not
read ``GET /user``) and as a user's token on Jenkins (``GET /user`` names it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipml.github import GitHubClient, GitHubRequestError
from shipml.monitor import _alert
from tests.monitor.fake_issues import FakeIssues
from tests.report.conftest import TOKEN
from tests.report.fake_github import BOT

REPO = "octo/models"
MARKER = _alert.issue_marker("churn")
REVIEWER = {"login": "mallory", "id": 9100002, "type": "User"}
MACHINE_USER = {"login": "models-ci", "id": 9100001, "type": "User"}


@pytest.fixture(params=["github-actions", "jenkins"])
def github(request: pytest.FixtureRequest) -> Iterator[FakeIssues]:
    """The stand-in, its token the Actions one (None: github-actions[bot]) or a user's."""
    viewer = MACHINE_USER if request.param == "jenkins" else None
    fake = FakeIssues(TOKEN, viewer=viewer).start()
    try:
        yield fake
    finally:
        fake.stop()


def _issue(github: FakeIssues, author: dict[str, Any], state: str = "drift") -> dict[str, Any]:
    issue = github._create({"title": "shipml monitor: drift in churn",
                            "body": f"{MARKER}\n{_alert.state_line(state)}\nsomeone's words",
                            "labels": ["shipml-monitor"]})
    issue["user"] = dict(author)
    return issue


def _message() -> _alert.Message:
    return _alert.Message(key="churn", title="shipml monitor: drift in churn",
                          body=f"{MARKER}\n{_alert.state_line('clear')}\ncleared",
                          back_comment="back", cleared_comment="cleared",
                          labels=("shipml-monitor",))


def _client(github: FakeIssues) -> GitHubClient:
    return GitHubClient(TOKEN, github.base_url, sleep=lambda seconds: None)


def test_an_older_look_alike_issue_is_passed_over_for_the_tokens_own(github: FakeIssues) -> None:
    _issue(github, REVIEWER)
    ours = _issue(github, github.author)
    found = _alert.find_issue(_client(github), REPO, "churn", ["shipml-monitor"])
    assert found is not None and found["number"] == ours["number"]
    assert found["user"]["login"] == (github.viewer or BOT)["login"]


def test_a_look_alike_issue_alone_is_never_touched_when_drift_clears(github: FakeIssues) -> None:
    fake = _issue(github, REVIEWER)
    before = dict(fake)
    client = _client(github)
    found = _alert.find_issue(client, REPO, "churn", ["shipml-monitor"])
    assert found is None
    decision = _alert.decide(found, drifted=False, on_clear="close", dispatch_on=None)
    _alert.apply(client, REPO, _message(), decision, found, None, _alert.AlertOutcome())
    assert github.issues[fake["number"]] == before  # not updated, commented on or closed
    assert [r.method for r in github.requests] == ["GET", "GET"]  # GET /user, then the listing


def test_drift_with_only_a_look_alike_opens_the_tokens_own_issue(github: FakeIssues) -> None:
    fake = _issue(github, REVIEWER)
    client = _client(github)
    found = _alert.find_issue(client, REPO, "churn", ["shipml-monitor"])
    decision = _alert.decide(found, drifted=True, on_clear="close", dispatch_on=None)
    outcome = _alert.AlertOutcome()
    _alert.apply(client, REPO, _message(), decision, found, None, outcome)
    assert outcome.actions == ["create"] and outcome.issue_number != fake["number"]
    assert [(r.method, r.path) for r in github.requests if r.method != "GET"] == [
        ("POST", f"/repos/{REPO}/issues")]


def test_a_403_asks_for_issues_write_and_a_dispatch_403_for_contents_write(
        github: FakeIssues) -> None:
    github.script("POST", rf"/repos/{REPO}/issues", 403,
                  {"message": "Resource not accessible by integration"})
    client = GitHubClient(TOKEN, github.base_url, sleep=lambda seconds: None,
                          permission="issues: write")  # as monitor builds it
    create = _alert.Decision(("create",))
    with pytest.raises(GitHubRequestError) as raised:
        _alert.apply(client, REPO, _message(), create, None, None, _alert.AlertOutcome())
    assert "    permissions:\n      issues: write\n      contents: read\n" in raised.value.message
    assert "pull-requests" not in raised.value.message

    github.script("POST", rf"/repos/{REPO}/dispatches", 403,
                  {"message": "Resource not accessible by integration"})
    dispatch_only = _alert.Decision((), dispatch=True)
    with pytest.raises(GitHubRequestError) as raised:
        _alert.apply(client, REPO, _message(), dispatch_only, None, (REPO, "retrain"),
                     _alert.AlertOutcome())
    assert "    permissions:\n      contents: write\n" in raised.value.message
    assert "pull-requests" not in raised.value.message


@pytest.mark.deepchecks
def test_shipml_monitor_on_a_read_only_token_asks_for_issues_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    from shipml.cli import main
    from tests.monitor.conftest import LABEL, copy_example, shifted, write_config

    project = copy_example(tmp_path / "project")
    test = pd.read_csv(project / "test.csv").drop(columns=[LABEL])
    shifted(test, pd.read_csv(project / "train.csv")).to_csv(project / "shifted.csv", index=False)
    write_config(project, {"key": "churn", "production": "shifted.csv"})
    fake = FakeIssues(TOKEN).start()
    try:
        fake.script("POST", rf"/repos/{REPO}/issues", 403,
                    {"message": "Resource not accessible by integration"})
        for name, value in {"SHIPML_CI": "github", "GITHUB_API_URL": fake.base_url,
                            "GITHUB_REPOSITORY": REPO, "GITHUB_TOKEN": TOKEN}.items():
            monkeypatch.setenv(name, value)
        main(["monitor", "--config", str(project / "shipml.yaml"),
              "--output-dir", str(project / ".shipml")])
    finally:
        fake.stop()
    err = capsys.readouterr().err
    assert "403 'Resource not accessible by integration'" in err
    assert "      issues: write\n" in err
    assert "pull-requests: write" not in err
