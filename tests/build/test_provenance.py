"""Where a build comes from, read from GitHub's, Jenkins' or git's context; the tag rules and the
labels read only this."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from shipml.build._git import detect_provenance
from shipml.build.labels import gate_verdicts, image_labels
from shipml.ci import detect, remote_url
from shipml.errors import ConfigError
from shipml.results import StageResult

SHA = "feedfacefeedfacefeedfacefeedfacefeedface"


def _github(tmp_path: Path, ref: str, event: dict[str, object]) -> dict[str, str]:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    return {"GITHUB_ACTIONS": "true", "GITHUB_REF": ref, "GITHUB_SHA": SHA,
            "GITHUB_REPOSITORY": "acme/churn", "GITHUB_EVENT_PATH": str(path)}


def test_github_tag_push(tmp_path: Path) -> None:
    env = _github(tmp_path, "refs/tags/v2.1.0", {"repository": {
        "default_branch": "trunk", "license": {"spdx_id": "MIT"}}})
    provenance = detect_provenance(detect(env), tmp_path, None)
    assert (provenance.git.tag, provenance.git.branch, provenance.git.sha) == ("v2.1.0", "", SHA)
    assert provenance.git.default_branch == "trunk"
    assert provenance.source == "https://github.com/acme/churn"
    assert provenance.licenses == "MIT"


def test_github_pull_request_and_branch(tmp_path: Path) -> None:
    pull = _github(tmp_path, "refs/pull/17/merge", {"pull_request": {"number": 17}})
    assert detect_provenance(detect(pull), tmp_path, None).git.pr_number == 17
    push = _github(tmp_path, "refs/heads/main", {"repository": {"license": {"spdx_id": "NOASSERTION"}}})
    provenance = detect_provenance(detect(push), tmp_path, "main")
    assert provenance.git.branch == "main" and provenance.git.pr_number is None
    assert provenance.licenses == ""


@pytest.mark.parametrize(("content", "problem"), [
    (b"[" * 100_000, "nests arrays or objects too deeply"),
    (b'{"repository": "\xff"}', "is not UTF-8 text"),
    (b'{"repository": ["acme"]}', "has repository as a JSON array, not an object"),
])
def test_an_unusable_event_file_is_bad_input_naming_the_variable(
        tmp_path: Path, content: bytes, problem: str) -> None:
    env = _github(tmp_path, "refs/heads/main", {})
    Path(env["GITHUB_EVENT_PATH"]).write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        detect_provenance(detect(env), tmp_path, None)
    assert str(raised.value).startswith("environment GITHUB_EVENT_PATH: ")
    assert problem in str(raised.value)


@pytest.mark.parametrize(("env", "branch", "tag", "pr"), [
    ({"BRANCH_NAME": "main"}, "main", "", None),
    ({"GIT_BRANCH": "origin/release"}, "release", "", None),
    ({"BRANCH_NAME": "PR-5", "CHANGE_ID": "5"}, "", "", 5),
    ({"TAG_NAME": "v1.0.0", "BRANCH_NAME": "v1.0.0"}, "", "v1.0.0", None),
])
def test_jenkins(tmp_path: Path, env: dict[str, str], branch: str, tag: str, pr: int | None) -> None:
    environ = {"JENKINS_URL": "https://ci.example.com/", "GIT_COMMIT": SHA,
               "GIT_URL": "https://user:s3cret@git.example.com/acme/churn.git", **env}
    provenance = detect_provenance(detect(environ), tmp_path, None)
    assert (provenance.git.branch, provenance.git.tag, provenance.git.pr_number) == (branch, tag, pr)
    assert provenance.git.sha == SHA
    assert provenance.source == "https://git.example.com/acme/churn"  # the password is gone


def test_a_laptop_reads_git(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "feature/x")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x")
    git("remote", "add", "origin", "git@github.com:acme/churn.git")
    provenance = detect_provenance(detect({}), tmp_path, None)
    assert provenance.git.branch == "feature/x" and len(provenance.git.sha) == 40
    assert provenance.source == "https://github.com/acme/churn"
    git("tag", "v0.3.0")
    assert detect_provenance(detect({}), tmp_path, None).git.tag == "v0.3.0"


@pytest.mark.parametrize(("url", "public"), [
    ("https://x-access-token:ghs_abc@github.com/acme/churn.git", "https://github.com/acme/churn"),
    # the ssh port is not the web server's (tests/ci/test_links.py has the whole rule)
    ("ssh://git@git.example.com:2222/acme/churn.git", "https://git.example.com/acme/churn"),
    ("/srv/git/churn", ""),
])
def test_remote_urls_lose_their_credentials(url: str, public: str) -> None:
    assert remote_url(url) == public


def test_labels_carry_the_verdicts_and_yield_to_the_users() -> None:
    results = [StageResult(stage=name, status=status, summary="", started_at="", duration_s=0)
               for name, status in (("latency", "pass"), ("validate", "pass"), ("report", "pass"))]
    verdicts = gate_verdicts(results, ["validate", "optimize", "latency"])
    assert verdicts == {"validate": "pass", "latency": "pass"}
    labels = image_labels(source="", revision=SHA, created="2026-01-01T00:00:00Z", version="1.0.0",
                          licenses="", title="churn", model_sha256="ab" * 32, model_name="m.onnx",
                          runtime="builtin", verdicts=verdicts,
                          extra={"org.opencontainers.image.title": "Churn model"})
    assert labels["dev.shipml.gates"] == "pass"
    assert labels["org.opencontainers.image.title"] == "Churn model"
    assert "org.opencontainers.image.source" not in labels  # empty values are left out
