"""The CI-platform layer: detection, step outputs, summaries, annotations, masks, PR context."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from shipml.ci import (
    ActPlatform,
    GitHubPlatform,
    JenkinsPlatform,
    LocalPlatform,
    PullRequest,
    detect,
)
from shipml.errors import ConfigError


@pytest.mark.parametrize(("environ", "kind"), [
    ({}, LocalPlatform),
    ({"GITHUB_ACTIONS": "true"}, GitHubPlatform),
    ({"GITHUB_ACTIONS": "true", "ACT": "true"}, ActPlatform),
    ({"JENKINS_URL": "https://ci.example.test/"}, JenkinsPlatform),
    ({"GITHUB_ACTIONS": "true", "SHIPML_CI": "local"}, LocalPlatform),
])
def test_detect(environ: dict[str, str], kind: type) -> None:
    assert type(detect(environ)) is kind


def test_act_never_publishes_and_github_does() -> None:
    assert ActPlatform({}).can_publish is False
    assert GitHubPlatform({}).can_publish is True


def test_unknown_forced_platform_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"SHIPML_CI='gitlab' is not a platform; valid: github"):
        detect({"SHIPML_CI": "gitlab"})


def test_outputs_use_a_random_heredoc_delimiter_that_values_cannot_forge(tmp_path: Path) -> None:
    output = tmp_path / "out"
    platform = GitHubPlatform({"GITHUB_OUTPUT": str(output)})
    hostile = "line one\nstatus<<EOF\npass\nEOF\nghadelimiter_x"
    assert platform.set_output("report", hostile)
    assert platform.set_output("status", "fail")
    text = output.read_text()
    blocks = re.findall(r"^(\w+)<<(ghadelimiter_[0-9a-f]{32})\n(.*?)\n\2$", text, re.S | re.M)
    assert [(name, value) for name, _, value in blocks] == [("report", hostile), ("status", "fail")]
    assert blocks[0][1] != blocks[1][1]


def test_outputs_outside_github_are_not_written() -> None:
    assert LocalPlatform({}).set_output("status", "pass") is False
    assert GitHubPlatform({}).set_output("status", "pass") is False


def test_summary_appends(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    platform = GitHubPlatform({"GITHUB_STEP_SUMMARY": str(summary)})
    platform.add_summary("# one")
    platform.add_summary("two\n")
    assert summary.read_text() == "# one\ntwo\n"


def test_annotations_escape_data_and_properties() -> None:
    stream = io.StringIO()
    platform = GitHubPlatform({}, stream=stream)
    platform.annotate("error", "50% worse\nsecond line", file="conf,ig:1.yaml", line=7,
                      title="a: b")
    assert stream.getvalue() == (
        "::error file=conf%2Cig%3A1.yaml,line=7,title=a%3A b::50%25 worse%0Asecond line\n")


def test_mask_each_line_of_a_multiline_secret() -> None:
    stream = io.StringIO()
    GitHubPlatform({}, stream=stream).mask("-----BEGIN KEY-----\nabc%def\n")
    assert stream.getvalue() == "::add-mask::-----BEGIN KEY-----\n::add-mask::abc%25def\n"


def test_local_annotation_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    LocalPlatform({}).annotate("warning", "drift", file="shipml.yaml", line=3)
    assert capsys.readouterr().err == "warning: shipml.yaml:3: drift\n"


def test_pull_request_from_the_event_payload(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({
        "number": 42,
        "pull_request": {"number": 42, "head": {"sha": "abc123"}, "base": {"ref": "main"}},
        "repository": {"full_name": "acme/models"},
    }))
    platform = GitHubPlatform({"GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": "x/y"})
    assert platform.pull_request() == PullRequest("acme/models", 42, "abc123", "main")


def test_push_event_has_no_pull_request(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"ref": "refs/heads/main", "after": "abc"}))
    assert GitHubPlatform({"GITHUB_EVENT_PATH": str(event)}).pull_request() is None


def test_run_url() -> None:
    platform = GitHubPlatform({"GITHUB_SERVER_URL": "https://github.example.test",
                               "GITHUB_REPOSITORY": "acme/models", "GITHUB_RUN_ID": "99"})
    assert platform.run_url() == "https://github.example.test/acme/models/actions/runs/99"


def test_jenkins_change_variables() -> None:
    platform = JenkinsPlatform({
        "CHANGE_ID": "17", "CHANGE_TARGET": "main", "GIT_COMMIT": "def456",
        "CHANGE_URL": "https://github.com/acme/models/pull/17",
        "BUILD_URL": "https://jenkins.example.test/job/models/17/",
    })
    assert platform.pull_request() == PullRequest("acme/models", 17, "def456", "main")
    assert platform.run_url() == "https://jenkins.example.test/job/models/17/"
    assert JenkinsPlatform({"BRANCH_NAME": "main"}).pull_request() is None


def test_api_url_honours_enterprise() -> None:
    assert GitHubPlatform({}).api_url() == "https://api.github.com"
    assert JenkinsPlatform({"GITHUB_API_URL": "https://ghe.example.test/api/v3"}).api_url() \
        == "https://ghe.example.test/api/v3"


def test_annotation_paths_are_made_relative_to_the_workspace(tmp_path: Path) -> None:
    stream = io.StringIO()
    platform = GitHubPlatform({"GITHUB_WORKSPACE": str(tmp_path)}, stream=stream)
    platform.annotate("warning", "x", file=str(tmp_path / "models" / "shipml.yaml"), line=2)
    assert stream.getvalue() == "::warning file=models/shipml.yaml,line=2::x\n"


_HOSTILE_EVENTS = [
    (b"[" * 100_000, "nests arrays or objects too deeply"),
    (b'{"number": 7, "repository": {"full_name": "acme/m\xffodels"}}', "is not UTF-8 text (byte 49)"),
    (b'{"number": 7,', "is not JSON (line 1 column 14: Expecting property name enclosed in "
                    "double quotes)"),
    (b'["not", "an", "object"]', "holds a JSON array, not an object"),
    (b'{"pull_request": "7"}', "has pull_request as a JSON string, not an object"),
    (b'{"pull_request": {"number": "seven"}}', "has pull_request.number as a JSON string, not "
                                              "an integer"),
    (b'{"number": true}', "has number as a JSON boolean, not an integer"),
    (b'{"number": 7, "repository": "acme/models"}', "has repository as a JSON string, not an "
                                                     "object"),
    (b'{"number": 7, "pull_request": {"head": []}}', "has pull_request.head as a JSON array, not "
                                                     "an object"),
]


@pytest.mark.parametrize(("content", "problem"), _HOSTILE_EVENTS)
def test_a_bad_event_file_is_a_config_error_naming_the_variable(
        tmp_path: Path, content: bytes, problem: str) -> None:
    event = tmp_path / "event.json"
    event.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        GitHubPlatform({"GITHUB_EVENT_PATH": str(event)}).pull_request()
    assert raised.value.message.startswith(f"environment GITHUB_EVENT_PATH: {event} {problem}; ")


@pytest.mark.parametrize("where", ["a folder", "missing"])
def test_an_event_path_that_is_no_file_is_a_config_error(tmp_path: Path, where: str) -> None:
    event = tmp_path / "event.json"
    if where == "a folder":
        event.mkdir()
    with pytest.raises(ConfigError, match=r"^environment GITHUB_EVENT_PATH: .* cannot be read"):
        GitHubPlatform({"GITHUB_EVENT_PATH": str(event)}).pull_request()
