from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from shipml.ci._guard import command_stream, guard_streams
from shipml.ci._links import repository_url
from shipml.errors import ConfigError, ShipmlError

AnnotationLevel = Literal["error", "warning", "notice"]

_PR_URL = re.compile(r"https?://(?P<host>[^/]+)/(?P<repo>[^/]+/[^/]+)/pull/(?P<number>\d+)")


@dataclass(frozen=True)
class PullRequest:
    """The pull request a run belongs to: where to comment and what it compares."""

    repository: str
    number: int
    head_sha: str = ""
    base_ref: str = ""


class Platform:
    """A CI platform; this base class is the plain local terminal."""

    name = "local"
    #: whether reports may be posted to a remote service from here (act never posts)
    can_publish = True
    #: whether the CI reads this process's output for workflow commands (see shipml.ci.guard_output)
    reads_workflow_commands = False

    def __init__(self, environ: Mapping[str, str] | None = None, stream: TextIO | None = None):
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        """Return where workflow commands and annotations are written (stdout by default).

        Under :func:`shipml.ci.guard_output` that is the raw stdout, past the guard.
        """
        return self._stream if self._stream is not None else command_stream(sys.stdout)

    def set_output(self, name: str, value: str) -> bool:
        """Publish a step output; return False where the platform has no step outputs."""
        return False

    def add_summary(self, markdown: str) -> bool:
        """Append markdown to the job summary; return False where there is none."""
        return False

    def annotate(
        self,
        level: AnnotationLevel,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        title: str | None = None,
    ) -> None:
        """Show a message attached to a file and line where the platform can."""
        where = file or ""
        if where and line:
            where = f"{where}:{line}"
        prefix = f"{level}: {where + ': ' if where else ''}{title + ': ' if title else ''}"
        print(prefix + message, file=sys.stderr)

    def mask(self, secret: str) -> None:
        """Hide ``secret`` from every later log line where the platform can."""

    def pull_request(self) -> PullRequest | None:
        """Return the pull request this run is for, or None outside one."""
        return None

    def repository(self) -> str | None:
        """Return ``owner/name`` of the repository, when known."""
        return self.environ.get("GITHUB_REPOSITORY") or None

    def commit_sha(self) -> str | None:
        """Return the commit under test, when known."""
        return self.environ.get("GITHUB_SHA") or self.environ.get("GIT_COMMIT") or None

    def run_url(self) -> str | None:
        """Return a link to this run's page, when there is one."""
        return None

    def api_url(self) -> str:
        """Return the GitHub REST API root (``GITHUB_API_URL`` for GitHub Enterprise)."""
        return self.environ.get("GITHUB_API_URL") or "https://api.github.com"


class LocalPlatform(Platform):
    """A developer's terminal."""


class GitHubPlatform(Platform):
    """GitHub Actions: step outputs, job summary and workflow commands."""

    name = "github"
    reads_workflow_commands = True

    def set_output(self, name: str, value: str) -> bool:
        return _append_heredoc(self.environ.get("GITHUB_OUTPUT"), name, value)

    def add_summary(self, markdown: str) -> bool:
        path = self.environ.get("GITHUB_STEP_SUMMARY")
        if not path:
            return False
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(markdown if markdown.endswith("\n") else markdown + "\n")
        return True

    def annotate(
        self,
        level: AnnotationLevel,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        title: str | None = None,
    ) -> None:
        properties = []
        if file:
            properties.append(f"file={_escape_property(self._workspace_relative(file))}")
        if line:
            properties.append(f"line={int(line)}")
        if title:
            properties.append(f"title={_escape_property(title)}")
        head = f"::{level} {','.join(properties)}" if properties else f"::{level}"
        print(f"{head}::{_escape_data(message)}", file=self.stream, flush=True)

    def _workspace_relative(self, file: str) -> str:
        # GitHub attaches an annotation to a file only by its path inside the workspace.
        workspace = self.environ.get("GITHUB_WORKSPACE")
        if workspace and Path(file).is_absolute():
            try:
                return str(Path(file).resolve().relative_to(Path(workspace).resolve()))
            except ValueError:
                return file
        return file

    def mask(self, secret: str) -> None:
        for part in secret.splitlines():
            if part.strip():
                print(f"::add-mask::{_escape_data(part)}", file=self.stream, flush=True)

    def pull_request(self) -> PullRequest | None:
        """Return the pull request of the event (``pull_request``, or an issue comment on one);
        raise ConfigError naming GITHUB_EVENT_PATH when the payload is unusable."""
        path = self.environ.get("GITHUB_EVENT_PATH") or ""
        event = read_event(path)
        number = (event_field(event, path, "pull_request", "number", kind=int)
                  or event_field(event, path, "number", kind=int))
        if not number and event_field(event, path, "issue", "pull_request"):
            number = event_field(event, path, "issue", "number", kind=int)
        if not number:
            return None
        repository = (event_field(event, path, "repository", "full_name", kind=str)
                      or self.environ.get("GITHUB_REPOSITORY") or "")
        return PullRequest(
            repository=repository,
            number=int(number),
            head_sha=(event_field(event, path, "pull_request", "head", "sha", kind=str)
                      or self.environ.get("GITHUB_SHA", "")),
            base_ref=(event_field(event, path, "pull_request", "base", "ref", kind=str)
                      or self.environ.get("GITHUB_BASE_REF", "")),
        )

    def run_url(self) -> str | None:
        # no link where GITHUB_REPOSITORY is no owner/name (act sets it to a local remote)
        repository = repository_url(self.environ)
        run_id = self.environ.get("GITHUB_RUN_ID", "")
        if not (repository and run_id.isdigit()):
            return None
        return f"{repository}/actions/runs/{run_id}"


class ActPlatform(GitHubPlatform):
    """``act`` runs the workflow locally as a dry run: everything GitHub does, never posting."""

    name = "act"
    can_publish = False


class JenkinsPlatform(Platform):
    """Jenkins (multibranch pipelines set ``CHANGE_*`` for pull requests)."""

    name = "jenkins"

    def pull_request(self) -> PullRequest | None:
        change_id = self.environ.get("CHANGE_ID", "")
        if not change_id.isdigit():
            return None
        repository = self.environ.get("SHIPML_GITHUB_REPOSITORY") or self.repository() or ""
        return PullRequest(
            repository=repository,
            number=int(change_id),
            head_sha=self.environ.get("GIT_COMMIT", ""),
            base_ref=self.environ.get("CHANGE_TARGET", ""),
        )

    def repository(self) -> str | None:
        explicit = self.environ.get("SHIPML_GITHUB_REPOSITORY") or self.environ.get(
            "GITHUB_REPOSITORY"
        )
        if explicit:
            return explicit
        match = _PR_URL.match(self.environ.get("CHANGE_URL", ""))
        return match.group("repo") if match else None

    def run_url(self) -> str | None:
        return self.environ.get("BUILD_URL") or None


def detect(environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> Platform:
    """Return the platform this process runs on, judged from the environment.

    ``SHIPML_CI`` (github, act, jenkins, local) overrides detection; an unknown value raises
    ConfigError.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    forced = env.get("SHIPML_CI", "").strip().lower()
    kinds: dict[str, type[Platform]] = {
        "github": GitHubPlatform,
        "act": ActPlatform,
        "jenkins": JenkinsPlatform,
        "local": LocalPlatform,
    }
    if forced:
        if forced not in kinds:
            raise ConfigError(
                f"environment SHIPML_CI={forced!r} is not a platform; valid: {', '.join(kinds)}"
            )
        return kinds[forced](env, stream)
    if env.get("ACT", "").lower() == "true":
        return ActPlatform(env, stream)
    if env.get("GITHUB_ACTIONS", "").lower() == "true":
        return GitHubPlatform(env, stream)
    if env.get("JENKINS_URL") or env.get("JENKINS_HOME"):
        return JenkinsPlatform(env, stream)
    return LocalPlatform(env, stream)


def _append_heredoc(path: str | None, name: str, value: str) -> bool:
    if not path:
        return False
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
        raise ValueError(f"invalid step output name {name!r}")
    # A random delimiter cannot be forged by a value that contains a line with a known one.
    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    while delimiter in value:
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    return True


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


#: an event payload larger than this is not one GitHub wrote (its webhooks stop at 25 MB)
MAX_EVENT_BYTES = 32 * 2**20
EVENT_UNUSABLE = (
    "environment GITHUB_EVENT_PATH: {path} {problem}; it must name the JSON object GitHub "
    "writes for the event that started the job. Leave the variable as the runner sets it (or "
    "unset it outside GitHub Actions), and check any step that rewrites that file"
)


def read_event(path: str | None) -> dict[str, Any]:
    """Return the event payload that ``GITHUB_EVENT_PATH`` (``path``) names; {} when it is
    unset or empty. Raises ConfigError (exit 2) naming the variable when the file cannot be
    read, is larger than MAX_EVENT_BYTES, is not UTF-8 JSON, nests too deeply, or is not an
    object."""
    if not path or not path.strip():
        return {}
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_EVENT_BYTES + 1)
    except OSError as exc:
        raise _bad_event(path, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > MAX_EVENT_BYTES:
        raise _bad_event(path, f"is larger than {MAX_EVENT_BYTES // 2**20} MiB")
    try:
        event = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _bad_event(path, f"is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise _bad_event(path, f"is not JSON (line {exc.lineno} column {exc.colno}: "
                               f"{exc.msg})") from None
    except RecursionError:
        raise _bad_event(path, "nests arrays or objects too deeply") from None
    if not isinstance(event, dict):
        raise _bad_event(path, f"holds a JSON {_json_type(event)}, not an object")
    return event


def event_field(event: Mapping[str, Any], path: str, *keys: str, kind: type = dict) -> Any:
    """Return ``event[keys[0]][keys[1]]…`` (None when a key is absent or null); raise
    ConfigError naming the variable and the field when a value on the way is not of the type
    GitHub documents (objects on the way, ``kind`` at the end)."""
    node: Any = event
    for depth, key in enumerate(keys):
        if node is None:
            return None
        node = node.get(key)
        wanted = kind if depth == len(keys) - 1 else dict
        if node is not None and not (isinstance(node, wanted) and not isinstance(node, bool)):
            field = ".".join(keys[: depth + 1])
            raise _bad_event(path, f"has {field} as a JSON {_json_type(node)}, not "
                                   f"{_KIND_NAMES.get(wanted, wanted.__name__)}")
    return node


_KIND_NAMES = {dict: "an object", int: "an integer", str: "a string"}


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _bad_event(path: str, problem: str) -> ConfigError:
    shown = "".join(char if char.isprintable() else "?" for char in path)
    return ConfigError(EVENT_UNUSABLE.format(path=shown, problem=problem))


@contextmanager
def guard_output(platform: Platform | None = None) -> Iterator[None]:
    """Guard ``sys.stdout`` and ``sys.stderr`` for the duration of the ``with`` block.

    On platforms whose log is read for workflow commands (GitHub Actions, act; ``platform`` or, when
    None, :func:`detect`), both streams, and the logging handlers writing to them, are wrapped (see
    :func:`shipml.ci._guard.guard_streams`); on exit the open line is written and everything
    restored. Elsewhere nothing changes. Nested calls guard once. Never raises on its own.
    """
    if _reads_workflow_commands(platform):
        with guard_streams():
            yield
    else:
        yield


def _reads_workflow_commands(platform: Platform | None) -> bool:
    if platform is None:
        try:
            platform = detect()
        except ShipmlError:
            # An unknown SHIPML_CI is reported by the command itself; guard if GitHub might read us.
            return os.environ.get("GITHUB_ACTIONS") == "true" or os.environ.get("ACT") == "true"
    return platform.reads_workflow_commands
