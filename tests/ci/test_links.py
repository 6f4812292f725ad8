"""Links to the repository: GITHUB_SERVER_URL + GITHUB_REPOSITORY when it is an owner/name, else
the git remote when it is an https or ssh URL of a host and a repository path, else no link. A
checkout whose remote is a local path (act then sets GITHUB_REPOSITORY to that path) gets plain
text, never ``https://github.com//tmp/…``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from shipml.build._git import detect_provenance
from shipml.canary.lock import me
from shipml.ci import detect, remote_url, repository_url

SHA = "feedfacefeedfacefeedfacefeedfacefeedface"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A real repository cloned from a bare one by its local path: origin is that path."""
    upstream = tmp_path / "upstream.git"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(upstream))
    work = tmp_path / "work"
    _git(tmp_path, "clone", "-q", str(upstream), str(work))
    _git(work, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty",
         "-m", "x")
    assert _git(work, "remote", "get-url", "origin") == str(upstream)
    return work


def _act(work: Path, tmp_path: Path) -> dict[str, str]:
    """The variables act sets in a checkout whose remote is no GitHub URL: the remote itself as
    GITHUB_REPOSITORY, github.com as the server, a run id."""
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"ref": "refs/heads/main"}), encoding="utf-8")
    return {"ACT": "true", "GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": _git(work, "remote", "get-url", "origin"),
            "GITHUB_RUN_ID": "1", "GITHUB_SHA": SHA, "GITHUB_REF": "refs/heads/main",
            "GITHUB_EVENT_PATH": str(event)}


def test_a_local_remote_gives_no_source_link_on_a_laptop(checkout: Path) -> None:
    assert detect_provenance(detect({}), checkout, None).source == ""


def test_a_local_remote_gives_no_link_under_act(checkout: Path, tmp_path: Path) -> None:
    env = _act(checkout, tmp_path)
    platform = detect(env)
    assert platform.name == "act"
    assert detect_provenance(platform, checkout, None).source == ""
    assert platform.run_url() is None
    holder = me(60.0, 0.0, env).holder
    assert holder.startswith("GitHub Actions run 1 (pid ") and "github.com/" not in holder


def test_a_file_url_remote_gives_no_link(checkout: Path, tmp_path: Path) -> None:
    _git(checkout, "remote", "set-url", "origin", (tmp_path / "upstream.git").as_uri())
    assert detect_provenance(detect({}), checkout, None).source == ""
    assert detect_provenance(detect(_act(checkout, tmp_path)), checkout, None).source == ""


@pytest.mark.parametrize("remote", [
    "git@github.com:acme/churn.git",
    "ssh://git@github.com/acme/churn.git",
    "https://github.com/acme/churn.git",
    "https://x-access-token:ghs_secret@github.com/acme/churn",
])
def test_github_remotes_of_a_real_checkout_give_the_repository(checkout: Path, tmp_path: Path,
                                                               remote: str) -> None:
    _git(checkout, "remote", "set-url", "origin", remote)
    assert detect_provenance(detect({}), checkout, None).source == "https://github.com/acme/churn"
    # under act with a GitHub remote, act's GITHUB_REPOSITORY is owner/name
    env = {**_act(checkout, tmp_path), "GITHUB_REPOSITORY": "acme/churn"}
    assert detect_provenance(detect(env), checkout, None).source == \
        "https://github.com/acme/churn"
    assert detect(env).run_url() == "https://github.com/acme/churn/actions/runs/1"


def test_github_server_and_repository_win_over_the_remote(checkout: Path, tmp_path: Path) -> None:
    env = {**_act(checkout, tmp_path), "GITHUB_SERVER_URL": "https://ghe.example.test/",
           "GITHUB_REPOSITORY": "acme/models"}
    assert detect_provenance(detect(env), checkout, None).source == \
        "https://ghe.example.test/acme/models"
    assert detect(env).run_url() == "https://ghe.example.test/acme/models/actions/runs/1"
    assert me(60.0, 0.0, env).holder.startswith(
        "GitHub Actions run https://ghe.example.test/acme/models/actions/runs/1 (pid ")


@pytest.mark.parametrize(("remote", "link"), [
    ("git@github.com:acme/churn.git", "https://github.com/acme/churn"),
    ("github.com:acme/churn", "https://github.com/acme/churn"),
    ("ssh://git@github.com/acme/churn.git", "https://github.com/acme/churn"),
    ("ssh://git@ghe.example.test:2222/acme/churn.git", "https://ghe.example.test/acme/churn"),
    ("git+ssh://git@ghe.example.test/acme/churn", "https://ghe.example.test/acme/churn"),
    ("https://github.com/acme/churn", "https://github.com/acme/churn"),
    ("https://ghe.example.test:8443/acme/churn.git/", "https://ghe.example.test:8443/acme/churn"),
    ("https://user:s3cret@ghe.example.test/acme/churn.git", "https://ghe.example.test/acme/churn"),
    ("/tmp/upstream.git", ""),
    ("../upstream", ""),
    ("upstream", ""),
    ("file:///tmp/upstream.git", ""),
    ("C:/repos/churn", ""),
    ("https://github.com/", ""),
    ("https://github.com/acme", ""),
    ("https://github.com/acme/../etc", ""),
    ("ftp://example.test/acme/churn", ""),
    ("https://ghe.example.test:notaport/acme/churn", ""),
    ("", ""),
])
def test_remote_url(remote: str, link: str) -> None:
    assert remote_url(remote) == link


@pytest.mark.parametrize(("environ", "link"), [
    ({"GITHUB_REPOSITORY": "acme/churn"}, "https://github.com/acme/churn"),
    ({"GITHUB_REPOSITORY": "/tmp/upstream.git"}, ""),
    ({"GITHUB_REPOSITORY": "file:///tmp/upstream.git"}, ""),
    ({"GITHUB_REPOSITORY": "acme/churn", "GITHUB_SERVER_URL": "not a url"},
     "https://github.com/acme/churn"),
])
def test_repository_url_without_a_remote(environ: dict[str, str], link: str) -> None:
    assert repository_url(environ) == link
