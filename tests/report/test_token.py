"""The token: checked before use, never printed or written, sent only to the API's own origin."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipml.cli import main
from shipml.errors import ConfigError
from shipml.github import GitHubClient, GitHubUnavailable, check_token, origin
from tests.report import pipelines
from tests.report.conftest import TOKEN
from tests.report.fake_github import FakeGitHub, serve
from tests.report.test_cli import github_pr_env

REPO = "octo/models"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    pipelines.write(pipelines.passing(), tmp_path / ".shipml")
    return tmp_path


@pytest.fixture
def elsewhere() -> Iterator[FakeGitHub]:
    """A second fake API on another port: another origin, as an attacker's host would be."""
    yield from serve(TOKEN)


def everything_written(workdir: Path, captured: pytest.CaptureFixture[str],
                       caplog: pytest.LogCaptureFixture) -> str:
    out = captured.readouterr()
    files = [path.read_text(errors="replace") for path in workdir.rglob("*") if path.is_file()]
    return "\n".join([out.out, out.err, caplog.text, *files])


@pytest.mark.parametrize(("token", "problem"), [
    (f"{TOKEN}\nsecond-line-secret", "holds a line break"),
    (f"{TOKEN} {TOKEN}", "holds whitespace"),
    (f"{TOKEN}\x07", "holds a control character"),
    (f"{TOKEN}ťoken", "holds a character that is not ASCII"),
    (f"{TOKEN}€", "holds a character that is not ASCII"),
])
def test_a_malformed_token_is_exit_2_naming_its_source_never_its_value(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        token: str, problem: str) -> None:
    # Jenkins: the credential is bound to SHIPML_GITHUB_TOKEN, the comment goes to the PR
    for name, value in {"JENKINS_URL": "https://ci.example.com/", "CHANGE_ID": "7",
                        "CHANGE_URL": f"https://github.com/{REPO}/pull/7",
                        "GITHUB_API_URL": github.base_url, "SHIPML_GITHUB_TOKEN": token}.items():
        monkeypatch.setenv(name, value)
    assert main(["report", "--fail-on-publish-error"]) == 2
    written = everything_written(workdir, capsys, caplog)
    assert f"shipml report: the GitHub token from environment SHIPML_GITHUB_TOKEN {problem}" \
        in written
    assert "Traceback" not in written
    for part in {token, *token.split(), "second-line-secret"}:
        assert part not in written
    assert github.requests == []


def test_a_token_from_the_flag_is_checked_too(workdir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--github-token", "ghs_a\nb"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shipml report: the GitHub token from --github-token holds a line break")
    assert "ghs_a" not in err


def test_a_trailing_newline_is_dropped_and_the_token_works(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    github_pr_env(monkeypatch, workdir, github)
    monkeypatch.setenv("GITHUB_TOKEN", f"  {TOKEN}\n")
    assert main(["report", "--fail-on-publish-error"]) == 0
    assert github.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_check_token_and_the_client_refuse_without_quoting() -> None:
    assert check_token(f"{TOKEN}\r\n", "x") == TOKEN
    with pytest.raises(ConfigError) as raised:
        GitHubClient("ghs_abc\ndef")
    assert raised.value.exit_code == 2 and "ghs_abc" not in raised.value.message


def test_scrub_hides_every_form_an_exception_could_quote() -> None:
    client = GitHubClient(TOKEN, "https://api.github.com")
    text = f"header value 'Bearer {TOKEN}' and {TOKEN!r}"
    assert TOKEN not in client.scrub(text)


def test_pagination_to_another_host_stops_before_sending_the_token(
        github: FakeGitHub, elsewhere: FakeGitHub) -> None:
    link = f'<{elsewhere.base_url}/repositories/123/issues/7/comments?page=2>; rel="next"'
    github.script("GET", rf"/repos/{REPO}/issues/7/comments", 200, [{"id": 1, "body": "x"}],
                  headers={"Link": link})
    client = GitHubClient(TOKEN, github.base_url, sleep=lambda s: None)
    with pytest.raises(GitHubUnavailable) as raised:
        client.list_issue_comments(REPO, 7)
    assert elsewhere.requests == []
    assert raised.value.exit_code == 3
    assert raised.value.message.startswith(
        f"GitHub's next-page link after GET /repos/{REPO}/issues/7/comments points to "
        f"{elsewhere.host_url}, not to the GitHub API at {github.host_url}: shipml stopped there "
        "rather than send the token to another host.")
    assert TOKEN not in raised.value.message


def test_pagination_on_the_api_host_is_followed(github: FakeGitHub) -> None:
    # the same origin written differently (default port, upper case) is the same origin
    assert origin("https://API.github.com/x") == origin("https://api.github.com:443/y")
    assert origin("http://127.0.0.1:80/") == origin("http://127.0.0.1/")
    assert origin("https://api.github.com") != origin("http://api.github.com")
    assert origin("https://api.github.com") != origin("https://api.github.com.evil.example")
    for index in range(150):
        github.add_comment(7, f"c{index}")
    assert len(GitHubClient(TOKEN, github.base_url).list_issue_comments(REPO, 7)) == 150


def test_a_foreign_next_link_under_the_cli_is_a_warning_or_exit_3_and_leaks_nothing(
        workdir: Path, github: FakeGitHub, elsewhere: FakeGitHub,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    github_pr_env(monkeypatch, workdir, github)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    link = f'<{elsewhere.base_url}/repositories/123/issues/7/comments?page=2>; rel="next"'
    github.script("GET", rf"/repos/{REPO}/issues/7/comments", 200, [], headers={"Link": link},
                  times=2)
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert "::warning title=shipml report::shipml report not published: GitHub's next-page link" \
        in out
    assert main(["report", "--fail-on-publish-error"]) == 3
    assert elsewhere.requests == []
    written = everything_written(workdir, capsys, caplog)
    for line in written.splitlines():
        assert TOKEN not in line or line == f"::add-mask::{TOKEN}"
