"""Image tags by rules, as docker/metadata-action makes them: pure functions over a
:class:`GitContext`, so that tests drive them directly.

``sha`` gives ``sha-<7 hex>``; ``branch`` the branch name of a push (sanitised); ``pr``
``pr-<number>``; ``tag`` the git tag of a tag push as it is; ``semver`` a pattern over that tag
read as a version (``{{major}}.{{minor}}``; a pre-release only ever gives ``{{version}}``);
``latest`` on the default branch; ``raw`` its value. A rule that does not apply to the event
yields nothing; the rules together must yield a tag.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipml.errors import ConfigError

#: what a docker tag may be (the distribution spec's reference grammar)
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SEMVER = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+(?P<build>[0-9A-Za-z.-]+))?$"
)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
_PLACEHOLDERS = ("version", "major", "minor", "patch", "raw")

NO_TAG = (
    "the tag rules yield no tag for this {event}; add a rule that always applies, e.g.\n"
    "  build:\n    tags:\n      - {{type: sha}}\n      - {{type: raw, value: dev}}"
)


@dataclass(frozen=True)
class GitContext:
    """What the tag rules look at: the commit, and the branch, tag or pull request it was
    built for (at most one of them), and the repository's default branch."""

    sha: str = ""
    branch: str = ""
    tag: str = ""
    pr_number: int | None = None
    default_branch: str = "main"

    @property
    def event(self) -> str:
        """Return a short description of the event, for messages."""
        if self.pr_number is not None:
            return f"pull request #{self.pr_number}"
        if self.tag:
            return f"git tag {self.tag}"
        if self.branch:
            return f"push to branch {self.branch}"
        return "commit" if self.sha else "build (no commit, branch or tag known)"


@dataclass(frozen=True)
class Version:
    """A git tag read as a semantic version."""

    raw: str
    major: int
    minor: int
    patch: int
    prerelease: str = ""
    build: str = ""

    @property
    def version(self) -> str:
        """Return the version without the leading ``v`` (and with its pre-release)."""
        text = f"{self.major}.{self.minor}.{self.patch}"
        return f"{text}-{self.prerelease}" if self.prerelease else text


def parse_version(tag: str) -> Version | None:
    """Return ``tag`` (``v1.2.3``, ``1.2.3-rc.1``) as a version, or None when it is not one."""
    match = _SEMVER.match(tag.strip())
    if match is None:
        return None
    return Version(raw=tag, major=int(match["major"]), minor=int(match["minor"]),
                   patch=int(match["patch"]), prerelease=match["pre"] or "",
                   build=match["build"] or "")


def sanitize(name: str) -> str:
    """Return ``name`` (a branch) as a docker tag: other characters become ``-``, as
    metadata-action does; at most 128 characters."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    text = re.sub(r"^[.-]+", "", text)
    return text[:128]


def _dotted(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def render_tags(rules: Sequence[Mapping[str, Any]], context: GitContext,
                where: Callable[..., str] | None = None) -> list[str]:
    """Return the tags ``rules`` give for ``context``, in rule order, each once.

    ``where(*key_path)`` names a key in messages (default: the dotted key). Raises ConfigError
    naming the rule's key for a rule that cannot work (a semver rule without a pattern, an
    unknown placeholder, a result that is not a valid tag), and naming ``build.tags`` when no
    rule yields a tag.
    """
    name = where or (lambda *path: _dotted(path))
    tags: list[str] = []
    for index, rule in enumerate(rules):
        if not rule.get("enable", True):
            continue
        value = _apply(rule, context, lambda *path, i=index: name("build", "tags", i, *path))
        if value is None:
            continue
        tag = f"{rule.get('prefix', '')}{value}{rule.get('suffix', '')}"
        if not TAG_RE.fullmatch(tag):
            raise ConfigError(
                f"{name('build', 'tags', index)}: {tag!r} is not a valid image tag (letters, "
                f"digits, _ . - only, not starting with . or -, at most 128 characters)")
        if tag not in tags:
            tags.append(tag)
    if not tags:
        raise ConfigError(f"{name('build', 'tags')}: " + NO_TAG.format(event=context.event))
    return tags


def _apply(rule: Mapping[str, Any], context: GitContext, key: Callable[..., str]) -> str | None:
    kind = rule["type"]
    if kind == "sha":
        length = int(rule.get("length", 7))
        return f"sha-{context.sha[:length]}" if context.sha else None
    if kind == "branch":
        if context.branch and context.pr_number is None and not context.tag:
            return sanitize(context.branch)
        return None
    if kind == "pr":
        return f"pr-{context.pr_number}" if context.pr_number is not None else None
    if kind == "tag":
        return sanitize(context.tag) if context.tag else None
    if kind == "latest":
        on_default = (context.branch == context.default_branch and context.pr_number is None
                      and not context.tag)
        return "latest" if on_default else None
    if kind == "raw":
        if not rule.get("value"):
            raise ConfigError(f"{key('value')}: a raw rule needs a value, e.g. "
                              "{type: raw, value: stable}")
        return str(rule["value"])
    if kind == "semver":
        return _semver(rule, context, key)
    raise ConfigError(f"{key('type')}: unknown rule type {kind!r}")


def _semver(rule: Mapping[str, Any], context: GitContext, key: Callable[..., str]) -> str | None:
    pattern = rule.get("pattern")
    if not pattern:
        raise ConfigError(f"{key('pattern')}: a semver rule needs a pattern, e.g. "
                          "{type: semver, pattern: \"{{major}}.{{minor}}\"}")
    for placeholder in _PLACEHOLDER.findall(str(pattern)):
        if placeholder not in _PLACEHOLDERS:
            raise ConfigError(f"{key('pattern')}: unknown placeholder {{{{{placeholder}}}}}; "
                              f"valid: {', '.join('{{' + p + '}}' for p in _PLACEHOLDERS)}")
    if not context.tag:
        return None
    version = parse_version(context.tag)
    if version is None:
        return None
    if version.prerelease and "{{raw}}" not in str(pattern).replace(" ", ""):
        # A pre-release only ever extends {{version}}: it must not move 1.2 or 1 (metadata-action).
        pattern = "{{version}}"
    values = {"version": version.version, "major": str(version.major),
              "minor": str(version.minor), "patch": str(version.patch), "raw": version.raw}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], str(pattern))
