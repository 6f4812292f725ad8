"""``shipml report`` run in-process on each platform against the local GitHub fake."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from shipml.cli import main
from shipml.report.model import marker
from shipml.report.render import MAX_SUMMARY_BYTES
from shipml.results import StageError, StageResult
from tests.report import pipelines
from tests.report.conftest import TOKEN
from tests.report.fake_github import HUMAN, FakeGitHub, serve

REPO = "octo/models"
MARK = marker("default")
#: the account of a token Jenkins holds (a machine user's personal access token)
MACHINE_USER = {"login": "models-ci", "id": 9100001, "type": "User"}
#: a reviewer who pasted the marker on their comment's first line
REVIEWER = {"login": "mallory", "id": 9100002, "type": "User"}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    pipelines.write(pipelines.passing(), tmp_path / ".shipml")
    return tmp_path


def github_pr_env(monkeypatch: pytest.MonkeyPatch, workdir: Path, github: FakeGitHub,
                  *, number: int | None = 7) -> dict[str, Path]:
    event = workdir / "event.json"
    payload: dict[str, object] = {"repository": {"full_name": REPO}}
    if number is not None:
        payload.update(number=number, pull_request={
            "number": number, "head": {"sha": "feedface" * 5}, "base": {"ref": "main"}})
    event.write_text(json.dumps(payload))
    files = {"summary": workdir / "summary.md", "output": workdir / "output.txt"}
    for path in files.values():
        path.write_text("")
    for name, value in {
        "GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": github.base_url, "GITHUB_TOKEN": TOKEN, "GITHUB_RUN_ID": "42",
        "GITHUB_SERVER_URL": "https://github.com", "GITHUB_SHA": "feedface" * 5,
        "GITHUB_STEP_SUMMARY": str(files["summary"]), "GITHUB_OUTPUT": str(files["output"]),
    }.items():
        monkeypatch.setenv(name, value)
    return files


def marked(github: FakeGitHub, number: int = 7, tag: str = MARK) -> list[str]:
    return [body for body in github.bodies(number) if tag in body]


def test_ten_runs_among_150_comments_leave_one_with_the_newest_content(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    github_pr_env(monkeypatch, workdir, github)
    for index in range(100):
        github.add_comment(7, f"unrelated {index}", HUMAN)
    first_id = None
    for run in range(10):
        if run == 1:
            for index in range(100, 150):
                github.add_comment(7, f"unrelated {index}", HUMAN)
        assert main(["report", "--title", f"run {run}"]) == 0
        if first_id is None:
            first_id = next(c["id"] for c in github.comments[7] if MARK in c["body"])
    bodies = marked(github)
    assert len(bodies) == 1 and "## ✅ run 9: ready to ship" in bodies[0]
    assert [c["id"] for c in github.comments[7] if MARK in c["body"]] == [first_id]
    assert len(github.comments[7]) == 151
    assert len(github.requests_of("POST")) == 1  # created once, then edited in place
    assert len(github.requests_of("PATCH")) == 9
    assert github.requests_of("DELETE") == []


def test_two_keys_leave_two_comments(workdir: Path, github: FakeGitHub,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    github_pr_env(monkeypatch, workdir, github)
    assert main(["report", "--key", "cpu"]) == 0
    assert main(["report", "--key", "gpu"]) == 0
    assert main(["report", "--key", "cpu"]) == 0
    assert len(marked(github, tag=marker("cpu"))) == 1
    assert len(marked(github, tag=marker("gpu"))) == 1
    assert len(github.comments[7]) == 2


def test_two_reports_started_at_the_same_moment_leave_one(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    github_pr_env(monkeypatch, workdir, github)
    github.list_barrier = threading.Barrier(2, timeout=5)  # both list before either creates
    codes: list[int] = []
    threads = [threading.Thread(target=lambda t=title: codes.append(main(["report", "--title", t])))
               for title in ("job A", "job B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert codes == [0, 0]
    assert len(github.requests_of("POST")) == 2  # the race really happened
    bodies = marked(github)
    assert len(bodies) == 1
    assert "job A" in bodies[0] or "job B" in bodies[0]


def test_hide_superseded_posts_anew_and_minimizes_the_old(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    github_pr_env(monkeypatch, workdir, github)
    for _ in range(3):
        assert main(["report", "--comment-mode", "hide-superseded"]) == 0
    comments = [c for c in github.comments[7] if MARK in c["body"]]
    assert len(comments) == 3
    assert comments[2]["node_id"] not in github.minimized
    assert {comments[0]["node_id"], comments[1]["node_id"]} <= github.minimized
    assert all(r.path == "/graphql" for r in github.requests if r.method == "POST"
               and "comments" not in r.path)


def test_pull_request_run_writes_summary_outputs_and_prints_the_link(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    files = github_pr_env(monkeypatch, workdir, github)
    assert main(["report"]) == 0
    comment = github.comments[7][0]
    out = capsys.readouterr().out
    assert "shipml report: PASS: ready to ship: 6 of 6 stages passed\n" in out
    assert f"comment: {comment['html_url']}\n" in out
    summary = files["summary"].read_text()
    assert "## ✅ shipml: ready to ship" in summary and "xychart-beta" in summary
    assert "[CI run](https://github.com/octo/models/actions/runs/42)" in comment["body"]
    outputs = files["output"].read_text()
    assert "verdict<<" in outputs and "\npass\n" in outputs
    assert comment["html_url"] in outputs
    assert (workdir / ".shipml/report/report.html").is_file()


def test_push_without_pr_comments_on_the_commit_only_when_configured(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    files = github_pr_env(monkeypatch, workdir, github, number=None)
    assert main(["report"]) == 0
    assert github.requests == []
    assert "ready to ship" in files["summary"].read_text()
    assert main(["report", "--commit-comment"]) == 0
    assert [(r.method, r.path) for r in github.requests] == [
        ("POST", f"/repos/{REPO}/commits/{'feedface' * 5}/comments")]
    assert MARK in github.commit_comments[0]["body"]


def test_workflow_run_job_names_the_pull_request(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    github_pr_env(monkeypatch, workdir, github, number=None)
    monkeypatch.setenv("SHIPML_PR_NUMBER", "12")
    assert main(["report"]) == 0
    assert len(marked(github, 12)) == 1
    assert main(["report", "--pull-request", "13"]) == 0
    assert len(marked(github, 13)) == 1
    monkeypatch.setenv("SHIPML_PR_NUMBER", "twelve")
    assert main(["report"]) == 2


def test_jenkins_posts_through_github_enterprise_and_writes_html(
        workdir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Jenkins holds a person's (or a machine user's) token: GET /user names its author
    for enterprise in serve(TOKEN, prefix="/api/v3", viewer=MACHINE_USER):
        for name, value in {"JENKINS_URL": "https://ci.example.com/", "CHANGE_ID": "7",
                            "CHANGE_URL": f"https://ghe.example.com/{REPO}/pull/7",
                            "BUILD_URL": "https://ci.example.com/job/models/PR-7/3/",
                            "GITHUB_API_URL": enterprise.base_url,
                            "SHIPML_GITHUB_TOKEN": TOKEN}.items():
            monkeypatch.setenv(name, value)
        assert main(["report"]) == 0
        assert [r.path for r in enterprise.requests[:2]] == [
            "/api/v3/user", f"/api/v3/repos/{REPO}/issues/7/comments"]
        body = marked(enterprise)[0]
        assert "[CI run](https://ci.example.com/job/models/PR-7/3/)" in body
    html = (workdir / ".shipml/report/report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "ready to ship" in html
    assert TOKEN not in capsys.readouterr().out


def test_act_never_posts_and_prints_the_comment(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    github_pr_env(monkeypatch, workdir, github)
    monkeypatch.setenv("ACT", "true")
    assert main(["report"]) == 0
    assert github.requests == []
    out = capsys.readouterr().out
    comment = (workdir / ".shipml/report/comment.md").read_text()
    assert comment.startswith(MARK) and comment in out


def test_local_prints_the_text_rendering(workdir: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert out == (workdir / ".shipml/report/report.txt").read_text()
    assert out.startswith("shipml: PASS — ready to ship: 6 of 6 stages passed\n")
    assert "<!--" not in out


def test_publish_error_is_a_warning_by_default_and_fails_when_asked(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    github_pr_env(monkeypatch, workdir, github)
    github.script("GET", r".*/comments", 403,
                  {"message": "Resource not accessible by integration"}, times=2)
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert "::warning title=shipml report::shipml report not published: GitHub answered 403 " \
           "'Resource not accessible by integration'" in out
    monkeypatch.setenv("SHIPML_FAIL_ON_PUBLISH_ERROR", "true")
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shipml report: GitHub answered 403 'Resource not accessible by "
                          "integration' for GET /repos/octo/models/issues/7/comments")


def test_github_down_fails_with_exit_3_only_when_asked(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    github_pr_env(monkeypatch, workdir, github)
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    github.script("GET", r".*/comments", 502, {"message": "Bad Gateway"}, times=10)
    assert main(["report", "--fail-on-publish-error"]) == 3
    err = capsys.readouterr().err
    assert err.splitlines()[0] == ("report: GET /repos/octo/models/issues/7/comments: HTTP 502; "
                                   "retrying in 1 s")
    assert err.endswith(
        f"shipml report: GitHub API at {github.base_url} unreachable after 5 attempts: HTTP 502\n")
    assert waits == [1.0, 2.0, 4.0, 8.0]


def test_missing_token_on_a_pr_warns_with_the_permissions_snippet(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    github_pr_env(monkeypatch, workdir, github)
    monkeypatch.delenv("GITHUB_TOKEN")
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert "::warning title=shipml report::shipml report not published: no GitHub token, so the " \
           "report was not posted to pull request #7." in out
    assert "pull-requests: write" in out
    assert github.requests == []


def test_token_never_appears_in_any_output_on_any_path(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    files = github_pr_env(monkeypatch, workdir, github)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    echo = {"message": f"token {TOKEN} rejected"}
    scenarios = [
        ("GET", 401, {"message": "Bad credentials"}, {}),
        ("GET", 403, {"message": "Resource not accessible by integration"}, {}),
        ("GET", 404, {"message": "Not Found"}, {}),
        ("POST", 422, echo, {}),
        ("GET", 500, echo, {}),
        ("GET", 429, echo, {"Retry-After": "99999"}),
    ]
    seen = []
    for fail in ("--no-fail-on-publish-error", "--fail-on-publish-error"):
        for method, status, body, headers in scenarios:
            github.script(method, r".*", status, body, headers=headers, times=10)
            code = main(["report", fail, "--debug"])
            github.scripted.clear()
            seen.append(code)
            captured = capsys.readouterr()
            for line in (captured.out + captured.err + caplog.text).splitlines():
                assert TOKEN not in line or line == f"::add-mask::{TOKEN}", line
    assert seen == [0] * 6 + [2, 2, 2, 2, 3, 3]
    for path in [files["summary"], files["output"], *(workdir / ".shipml/report").iterdir()]:
        assert TOKEN not in path.read_text()


def test_no_results_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 2
    assert capsys.readouterr().err == (
        "shipml report: no stage results under .shipml/results: run a stage first (shipml "
        "validate, optimize, latency, ...), or download the .shipml artifact of the jobs that did "
        "into --output-dir\n")


def test_booleans_parse_strictly(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SHIPML_COMMENT", "maybe")
    assert main(["report"]) == 2
    assert capsys.readouterr().err == (
        "shipml report: environment SHIPML_COMMENT: 'maybe' is not a boolean; use true or false\n")


def test_unknown_key_names_the_nearest(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "shipml.yaml").write_text("report:\n  comment_mod: update\n")
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shipml report: shipml.yaml:2 report.comment_mod: unknown key "
                          "'report.comment_mod'; did you mean 'comment_mode'?")


def test_bad_key_and_mode_are_config_errors(workdir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--comment-mode", "replace"]) == 2
    assert capsys.readouterr().err == (
        "shipml report: --comment-mode: 'replace' is not valid; valid: update, hide-superseded\n")
    assert main(["report", "--key", "a b"]) == 2
    assert "--key: 'a b' does not match" in capsys.readouterr().err


def test_a_user_template_without_the_marker_is_a_config_error(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "templates").mkdir()
    (workdir / "templates" / "report.md.j2").write_text("## {{ report.title }}\n")
    (workdir / "shipml.yaml").write_text("report:\n  template_dir: templates\n")
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("shipml report: shipml.yaml:2 report.template_dir: report.md.j2 in ")
    assert "must start with {{ marker }}" in err


def test_fail_on_fail_exits_1_on_a_failed_pipeline(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pipelines.write(pipelines.failing(), tmp_path / ".shipml")
    assert main(["report"]) == 0
    assert main(["report", "--fail-on", "fail"]) == 1


def test_200_failing_checks_fit_in_one_comment_with_every_failure_name(
        tmp_path: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    results = pipelines.big_failing(200)
    pipelines.write(results, tmp_path / ".shipml")
    github_pr_env(monkeypatch, tmp_path, github)
    assert main(["report"]) == 0
    body = marked(github)[0]
    assert len(body) <= 65536
    for check in results[0].checks:
        if check.status == "fail":
            assert check.name in body
    assert "Shortened to fit GitHub's comment limit" in body
    assert len((tmp_path / ".shipml/report/report.md").read_text()) > 65536



def test_act_prints_a_dry_run_line_for_the_comment_it_would_post(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    github_pr_env(monkeypatch, workdir, github)
    monkeypatch.setenv("ACT", "true")
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("shipml report: dry run (act): would post to octo/models#7\n")
    assert main(["report", "--no-comment"]) == 0
    assert "dry run" not in capsys.readouterr().out
    assert github.requests == []


def test_act_on_a_push_names_the_commit_it_would_comment_on(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    github_pr_env(monkeypatch, workdir, github, number=None)
    monkeypatch.setenv("ACT", "true")
    assert main(["report", "--commit-comment"]) == 0
    assert capsys.readouterr().out.endswith(
        "shipml report: dry run (act): would post to octo/models@feedfacefeed\n")
    assert github.requests == []


def test_a_marker_quoted_in_another_report_does_not_make_it_a_duplicate(
        tmp_path: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    github_pr_env(monkeypatch, tmp_path, github)
    forged = StageResult("x <!-- shipml-report:other -->", "pass", "<!-- shipml-report:other -->",
                         pipelines.STARTED, 1.0)
    pipelines.write([pipelines.validate(), forged], tmp_path / ".shipml")
    github.add_comment(7, f"quoting it:\n{marker('other')}\nplease fix", HUMAN)
    github.add_comment(7, f"{marker('other')} but more on the line", HUMAN)
    assert main(["report"]) == 0  # key default, its body quotes the other key's marker
    ours = github.comments[7][-1]
    assert ours["body"].count("<!--") == 1
    assert main(["report", "--key", "other"]) == 0
    assert main(["report", "--key", "other"]) == 0
    bodies = github.bodies(7)
    assert len(bodies) == 4 and github.requests_of("DELETE") == []
    assert bodies[2] == ours["body"]  # the default report is untouched
    assert bodies[3].startswith(marker("other") + "\n")


def test_a_config_error_replaces_ready_to_ship_with_the_error(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    github_pr_env(monkeypatch, workdir, github)
    assert main(["report"]) == 0
    assert "ready to ship" in github.bodies(7)[0]
    (workdir / "shipml.yaml").write_text("report:\n  title: [not, text]\n")
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    message = err.splitlines()[-1].removeprefix("shipml report: ")
    assert message.startswith("shipml.yaml:2 report.title")
    (body,) = github.bodies(7)
    assert body.startswith(f"{MARK}\n## 💥 shipml: not ready to ship: report stopped with a "
                           "configuration error\n")
    assert f"<pre>{message}</pre>" in body


def test_an_error_result_of_a_stage_is_reported_once_with_its_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipml.ci import detect
    from shipml.report.core import publish_error_report

    monkeypatch.chdir(tmp_path)
    error = StageError("config", 2, "shipml.yaml:4 latency.warmup: 1e12 is more than 100000")
    pipelines.write([pipelines.validate(),
                     StageResult("latency", "error", error.message, pipelines.STARTED, 0.0,
                                 error=error)], tmp_path / ".shipml")
    (tmp_path / ".shipml/results/optimize.json").write_text("{broken")
    run = publish_error_report(tmp_path / ".shipml", detect({}), "", error.message)
    assert run is not None and run.report.verdict == "error"
    assert [s.name for s in run.report.sections] == ["validate", "latency"]
    assert run.report.headline == "not ready to ship: latency stopped with a configuration error"
    markdown = (tmp_path / ".shipml/report/report.md").read_text()
    assert markdown.count(error.message) == 2  # the summary row and the section's message


def test_a_result_nested_100000_deep_is_exit_2_without_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / ".shipml/results"
    folder.mkdir(parents=True)
    (folder / "validate.json").write_text(
        '{"stage": "validate", "status": "pass", "metrics": ' + "[" * 100_000 + "]" * 100_000
        + "}")
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RecursionError" not in err
    assert err == ("shipml report: .shipml/results/validate.json: not a shipml stage result "
                   "(nested too deeply)\n")


def test_20000_failing_checks_keep_as_many_names_as_fit_in_comment_and_summary(
        tmp_path: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    results = pipelines.big_failing(20_000)
    pipelines.write(results, tmp_path / ".shipml")
    files = github_pr_env(monkeypatch, tmp_path, github)
    assert main(["report"]) == 0
    failures = [c.name for c in results[0].checks if c.status == "fail"]
    body = marked(github)[0]
    assert len(body) <= 65536
    named = [name for name in failures if f"**validate**: {name}\n" in body.replace("\\_", "_")]
    assert len(named) > 600 and named == failures[: len(named)]
    assert (f"- …and {len(failures) - len(named)} more failed checks: [full report]"
            "(https://github.com/octo/models/actions/runs/42#artifacts)") in body
    assert f"only the first {len(named)} of {len(failures)} failed checks are named" in body
    assert "every failure is kept" not in body
    summary = files["summary"].read_bytes()
    assert 60_000 < len(summary) <= MAX_SUMMARY_BYTES
    text = summary.decode()
    assert "Shortened to fit GitHub's job summary limit" in text
    assert failures[0] in text and failures[500] in text
    assert len((tmp_path / ".shipml/report/report.md").read_bytes()) > 8 * MAX_SUMMARY_BYTES


def _look_alike(github: FakeGitHub) -> dict[str, object]:
    return github.add_comment(7, f"{MARK}\n## ✅ shipml: ready to ship (or so I say)", REVIEWER)


def test_a_look_alike_comment_by_a_reviewer_is_never_edited_or_deleted_under_github_actions(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    github_pr_env(monkeypatch, workdir, github)
    fake = _look_alike(github)
    ours = github.add_comment(7, f"{MARK}\nthe bot's earlier report")  # github-actions[bot]
    assert main(["report"]) == 0
    comments = github.comments[7]
    assert [(c["id"], c["user"]["login"]) for c in comments] == [
        (fake["id"], "mallory"), (ours["id"], "github-actions[bot]")]
    assert comments[0]["body"] == f"{MARK}\n## ✅ shipml: ready to ship (or so I say)"
    assert "6 of 6 stages passed" in comments[1]["body"]
    assert [(r.method, r.path) for r in github.requests if r.method != "GET"] == [
        ("PATCH", f"/repos/{REPO}/issues/comments/{ours['id']}")]
    user = [r for r in github.requests if r.path == "/user"]
    assert len(user) == 1 and user[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_a_look_alike_comment_alone_is_left_and_the_report_posted_anew_under_jenkins(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for github in serve(TOKEN, viewer=MACHINE_USER):
        for name, value in {"JENKINS_URL": "https://ci.example.com/", "CHANGE_ID": "7",
                            "CHANGE_URL": f"https://github.com/{REPO}/pull/7",
                            "GITHUB_API_URL": github.base_url,
                            "SHIPML_GITHUB_TOKEN": TOKEN}.items():
            monkeypatch.setenv(name, value)
        fake = _look_alike(github)
        assert main(["report"]) == 0
        assert main(["report"]) == 0  # the second run edits its own comment, not the look-alike
        comments = github.comments[7]
        assert [c["user"]["login"] for c in comments] == ["mallory", "models-ci"]
        assert comments[0] == fake
        assert [(r.method, r.path) for r in github.requests if r.method != "GET"] == [
            ("POST", f"/repos/{REPO}/issues/7/comments"),
            ("PATCH", f"/repos/{REPO}/issues/comments/{comments[1]['id']}")]


def test_hide_superseded_never_hides_a_look_alike(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    github_pr_env(monkeypatch, workdir, github)
    monkeypatch.setenv("SHIPML_COMMENT_MODE", "hide-superseded")
    fake = _look_alike(github)
    ours = github.add_comment(7, f"{MARK}\nthe bot's earlier report")
    assert main(["report"]) == 0
    assert github.minimized == {ours["node_id"]}
    assert fake["node_id"] not in github.minimized


@pytest.mark.parametrize(("content", "problem"), [
    (b"[" * 100_000, "nests arrays or objects too deeply"),
    (b'{"number": 7, "pull_request": {"number": 7, "title": "\xff"}}', "is not UTF-8 text"),
])
def test_a_bad_event_file_is_exit_2_naming_the_variable(
        workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], content: bytes, problem: str) -> None:
    github_pr_env(monkeypatch, workdir, github)
    (workdir / "event.json").write_bytes(content)
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"shipml report: environment GITHUB_EVENT_PATH: "
                          f"{workdir / 'event.json'} {problem}")
    assert "internal error" not in err and "Traceback" not in err
    assert github.requests == []


def test_a_failing_check_named_with_100000_characters_is_cut_never_dropped(
        tmp_path: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    long_name = "p95 latency at batch 1 is below 20 ms " + "x" * 100_000
    result = StageResult.from_dict({
        "stage": "latency", "status": "fail", "summary": "1 of 1 budgets missed",
        "started_at": "2026-11-25T10:00:00+00:00", "duration_s": 3.0,
        "checks": [{"name": long_name, "status": "fail"}]})
    result.write(tmp_path / ".shipml")
    files = github_pr_env(monkeypatch, tmp_path, github)
    assert main(["report"]) == 0
    body = marked(github)[0]
    assert len(body) <= 65536
    assert "only the first 0 of 1" not in body
    assert "every failed check is named, the rest was cut; 1 long name cut short with …" in body
    [line] = [line for line in body.splitlines() if line.startswith("- **latency**: ")]
    assert line.startswith("- **latency**: p95 latency at batch 1 is below 20 ms xxx")
    assert line.endswith("x…") and len(line) > 60_000  # the name keeps the room there is
    assert long_name in files["summary"].read_text()  # the job summary has room for it all


def test_long_names_share_the_room_and_short_ones_stay_whole(
        tmp_path: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    names = ["short and sweet", "<|>" * 40_000, "y" * 90_000, "also short"]
    result = StageResult.from_dict({
        "stage": "validate", "status": "fail", "summary": "4 conditions failed",
        "started_at": "2026-11-25T10:00:00+00:00", "duration_s": 3.0,
        "checks": [{"name": name, "status": "fail"} for name in names]})
    result.write(tmp_path / ".shipml")
    github_pr_env(monkeypatch, tmp_path, github)
    assert main(["report"]) == 0
    body = marked(github)[0]
    assert len(body) <= 65536
    lines = [line for line in body.splitlines() if line.startswith("- **validate**: ")]
    assert lines[0] == "- **validate**: short and sweet"
    assert lines[1].startswith("- **validate**: &lt;\\|&gt;&lt;\\|&gt;") and lines[1].endswith("…")
    assert lines[2].startswith("- **validate**: yyyy") and lines[2].endswith("y…")
    assert lines[3] == "- **validate**: also short"
    assert "2 long names cut short with …" in body
