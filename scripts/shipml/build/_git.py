"""Where the image is built from: the commit, branch, tag or pull request, the source URL and the
license, read from the GitHub or Jenkins context, or from ``git`` on a laptop."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipml.build.tags import GitContext
from shipml.ci import Platform, event_field, read_event, remote_url, repository_url

_PR_REF = re.compile(r"^refs/pull/(\d+)/")


@dataclass(frozen=True)
class Provenance:
    """The git context the tag rules read and what the OCI labels record about the source."""

    git: GitContext
    source: str = ""
    licenses: str = ""


def detect_provenance(platform: Platform, cwd: Path, default_branch: str | None) -> Provenance:
    """Return the provenance of this build for ``platform`` (GitHub, act, Jenkins, local).

    ``default_branch`` overrides the repository's default branch (the event's, else ``main``).
    """
    env = platform.environ
    if platform.name in ("github", "act"):
        return _github(platform, env, cwd, default_branch)
    if platform.name == "jenkins":
        return _jenkins(env, cwd, default_branch)
    return _local(cwd, default_branch)


def _github(platform: Platform, env: Mapping[str, str], cwd: Path,
            default_branch: str | None) -> Provenance:
    path = env.get("GITHUB_EVENT_PATH") or ""
    repository: dict[str, Any] = event_field(read_event(path), path, "repository") or {}
    ref = env.get("GITHUB_REF", "")
    branch = tag = ""
    pr_number: int | None = None
    pull = platform.pull_request()
    if pull is not None:
        pr_number = pull.number
    elif _PR_REF.match(ref):
        pr_number = int(_PR_REF.match(ref).group(1))  # type: ignore[union-attr]
    elif ref.startswith("refs/tags/"):
        tag = ref.removeprefix("refs/tags/")
    elif ref.startswith("refs/heads/"):
        branch = ref.removeprefix("refs/heads/")
    license_found = repository.get("license")
    license_record: dict[str, Any] = license_found if isinstance(license_found, dict) else {}
    spdx = str(license_record.get("spdx_id") or "")
    full_name = str(repository.get("full_name") or "")
    # GITHUB_REPOSITORY, else the event's repository, else the checkout's remote (act)
    source = repository_url(env) or repository_url({**env, "GITHUB_REPOSITORY": full_name},
                                                   _git(cwd, "remote", "get-url", "origin"))
    return Provenance(
        git=GitContext(sha=env.get("GITHUB_SHA", ""), branch=branch, tag=tag, pr_number=pr_number,
                       default_branch=default_branch or str(repository.get("default_branch") or "main")),
        source=source,
        licenses="" if spdx in ("", "NOASSERTION") else spdx,
    )


def _jenkins(env: Mapping[str, str], cwd: Path, default_branch: str | None) -> Provenance:
    change = env.get("CHANGE_ID", "")
    tag = env.get("TAG_NAME", "")
    branch = ""
    if not change.isdigit() and not tag:
        branch = env.get("BRANCH_NAME") or re.sub(r"^(origin|refs/heads)/", "", env.get("GIT_BRANCH", ""))
    sha = env.get("GIT_COMMIT") or _git(cwd, "rev-parse", "HEAD")
    return Provenance(
        git=GitContext(sha=sha, branch=branch, tag=tag,
                       pr_number=int(change) if change.isdigit() else None,
                       default_branch=default_branch or "main"),
        source=remote_url(env.get("GIT_URL") or _git(cwd, "remote", "get-url", "origin")),
    )


def _local(cwd: Path, default_branch: str | None) -> Provenance:
    sha = _git(cwd, "rev-parse", "HEAD")
    tag = _git(cwd, "describe", "--exact-match", "--tags", "HEAD") if sha else ""
    branch = "" if tag else _git(cwd, "symbolic-ref", "--short", "-q", "HEAD")
    return Provenance(
        git=GitContext(sha=sha, branch=branch, tag=tag, default_branch=default_branch or "main"),
        source=remote_url(_git(cwd, "remote", "get-url", "origin")),
    )


def work_tree(folder: Path) -> Path:
    """Return the root of the git working tree that holds ``folder`` (symlinks resolved), or
    ``folder`` itself, resolved, when it is in none."""
    top = _git(folder, "rev-parse", "--show-toplevel") if folder.is_dir() else ""
    return Path(top).resolve() if top else folder.resolve()


def _git(cwd: Path, *args: str) -> str:
    try:
        completed = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                   timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return completed.stdout.strip() if completed.returncode == 0 else ""
