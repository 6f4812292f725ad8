"""Tag rules as docker/metadata-action applies them: pure functions over a git context."""

from __future__ import annotations

import pytest

from shipml.build.tags import GitContext, parse_version, render_tags, sanitize
from shipml.errors import ConfigError

SHA = "ad132f5e3b1c9d8e7f6a5b4c3d2e1f0a9b8c7d6e"
DEFAULT = [{"type": "sha"}, {"type": "branch"}, {"type": "pr"}, {"type": "tag"},
           {"type": "semver", "pattern": "{{version}}"},
           {"type": "semver", "pattern": "{{major}}.{{minor}}"}, {"type": "latest"}]


@pytest.mark.parametrize(("context", "expected"), [
    (GitContext(sha=SHA, branch="main"), ["sha-ad132f5", "main", "latest"]),
    (GitContext(sha=SHA, branch="feature/new-model"), ["sha-ad132f5", "feature-new-model"]),
    (GitContext(sha=SHA, pr_number=42), ["sha-ad132f5", "pr-42"]),
    (GitContext(sha=SHA, tag="v1.2.3"), ["sha-ad132f5", "v1.2.3", "1.2.3", "1.2"]),
    # a pre-release never moves 2.0: every semver pattern gives {{version}}, once
    (GitContext(sha=SHA, tag="v2.0.0-rc.1"), ["sha-ad132f5", "v2.0.0-rc.1", "2.0.0-rc.1"]),
    # a tag that is not a version still gets its own tag, no semver ones
    (GitContext(sha=SHA, tag="nightly"), ["sha-ad132f5", "nightly"]),
    (GitContext(sha=SHA, branch="trunk", default_branch="trunk"), ["sha-ad132f5", "trunk", "latest"]),
])
def test_the_default_rules_tag_like_metadata_action(context: GitContext, expected: list[str]) -> None:
    assert render_tags(DEFAULT, context) == expected


def test_prefix_suffix_length_and_enable() -> None:
    rules = [{"type": "sha", "length": 12, "prefix": "model-"},
             {"type": "semver", "pattern": "{{major}}", "suffix": "-cpu"},
             {"type": "raw", "value": "stable", "enable": False}]
    assert render_tags(rules, GitContext(sha=SHA, tag="v3.4.5")) == ["model-sha-ad132f5e3b1c", "3-cpu"]


def test_rules_that_yield_nothing_name_the_key_and_the_event() -> None:
    with pytest.raises(ConfigError) as error:
        render_tags([{"type": "pr"}, {"type": "semver", "pattern": "{{version}}"}],
                    GitContext(sha=SHA, branch="main"))
    assert error.value.message.startswith(
        "build.tags: the tag rules yield no tag for this push to branch main; add a rule that "
        "always applies, e.g.\n  build:\n    tags:\n      - {type: sha}")


@pytest.mark.parametrize(("rule", "message"), [
    ({"type": "semver"}, "build.tags[0].pattern: a semver rule needs a pattern"),
    ({"type": "semver", "pattern": "{{mayor}}"}, "build.tags[0].pattern: unknown placeholder {{mayor}}"),
    ({"type": "raw"}, "build.tags[0].value: a raw rule needs a value"),
    ({"type": "raw", "value": "has space"}, "build.tags[0]: 'has space' is not a valid image tag"),
    ({"type": "raw", "value": "-dash"}, "build.tags[0]: '-dash' is not a valid image tag"),
])
def test_a_rule_that_cannot_work_names_its_key(rule: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        render_tags([rule], GitContext(sha=SHA, tag="v1.0.0"))
    assert error.value.message.startswith(message)


def test_where_names_the_file_and_line() -> None:
    with pytest.raises(ConfigError) as error:
        render_tags([{"type": "pr"}], GitContext(), where=lambda *path: f"shipml.yaml:7 {path}")
    assert error.value.message.startswith("shipml.yaml:7 ('build', 'tags'): the tag rules yield no "
                                          "tag for this build (no commit, branch or tag known)")


def test_versions_and_sanitized_names() -> None:
    version = parse_version("v1.22.333-beta.2+build.7")
    assert version is not None
    assert (version.major, version.minor, version.patch, version.version) == (1, 22, 333, "1.22.333-beta.2")
    assert parse_version("1.2") is None and parse_version("release-1.2.3") is None
    assert sanitize("feature/ümlaut name") == "feature-mlaut-name"
    assert sanitize("-x" + "a" * 200) == "x" + "a" * 127
