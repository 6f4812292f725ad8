"""shipml's own workflows (.github/): least privilege, every third-party action pinned by commit
with its version in a comment, no credentials left in a checkout, and the release's rules (trusted
publishing with id-token on its job alone). zizmor and check-jsonschema run in .ci/test; this
holds the project's own rules on top of theirs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted([*(REPO / ".github" / "workflows").glob("*.yml"),
                    *(REPO / ".github" / "workflows").glob("*.yaml")])
_PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
_VERSION_COMMENT = re.compile(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
_READ_ONLY = ({}, {"contents": "read"})


def _load(path: Path) -> dict[Any, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _steps(document: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, step) for name, job in document["jobs"].items() for step in job.get("steps", [])]


def test_the_project_has_its_workflows() -> None:
    names = {path.name for path in WORKFLOWS}
    assert {"ci.yml", "self-test.yml", "release.yml"} <= names
    assert (REPO / ".github" / "dependabot.yml").is_file()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_a_workflow_grants_nothing_at_the_top_and_each_job_only_what_it_names(path: Path) -> None:
    document = _load(path)
    assert document.get("permissions") in _READ_ONLY, f"{path.name}: top-level permissions"
    for name, job in document["jobs"].items():
        # a job that names none inherits the read-only top level
        granted = job.get("permissions", {})
        assert granted not in ("write-all", "read-all"), f"{path.name}: job {name}: {granted}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_action_is_pinned_by_commit_with_its_version(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for name, step in _steps(_load(path)):
        uses = step.get("uses")
        if uses is None or uses.startswith("./"):
            continue
        assert _PINNED.match(uses), f"{path.name}: job {name}: {uses} is not pinned by full SHA"
        line = next(line for line in text.splitlines() if f"uses: {uses}" in line)
        assert _VERSION_COMMENT.search(line.rstrip()), f"{path.name}: {line.strip()} has no # vX.Y.Z"
        if uses.startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, \
                f"{path.name}: job {name}: checkout keeps the token in .git/config"


def test_the_release_publishes_with_trusted_publishing_from_one_job() -> None:
    document = _load(REPO / ".github" / "workflows" / "release.yml")
    assert document[True]["push"]["tags"][0] == "v*"  # YAML 1.1 reads `on` as True
    writers = {name: job["permissions"] for name, job in document["jobs"].items()}
    assert [name for name, granted in writers.items() if granted.get("id-token") == "write"] == ["pypi"]
    assert writers["pypi"] == {"id-token": "write"}
    publish = [step for _, step in _steps(document) if "gh-action-pypi-publish" in step.get("uses", "")]
    assert len(publish) == 1 and "password" not in publish[0].get("with", {})
    assert {name for name, granted in writers.items() if granted.get("contents") == "write"} == \
        {"github-release", "major-tag"}


def test_the_self_test_runs_the_actions_of_this_checkout_on_both_events() -> None:
    document = _load(REPO / ".github" / "workflows" / "self-test.yml")
    assert {"pull_request", "push"} <= set(document[True])
    local = {step["uses"] for _, step in _steps(document) if step.get("uses", "").startswith("./")}
    assert {"./", "./actions/setup", "./actions/validate", "./actions/report"} <= local
