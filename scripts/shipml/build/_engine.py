"""The thin adapter over the Docker Engine API (the ``docker`` SDK): build with the log streamed
line by line, tag, push by tag with retries, and the errors each can end in, said for the user.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.errors import ConfigError, InfrastructureError, first_line

log = logging.getLogger("shipml.build")

#: lines of a failing step's log shown with the error
LOG_TAIL = 25
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: the builder's own bookkeeping, not the step's output
_BOOKKEEPING = re.compile(r"^\s*(--->|Removing intermediate container |Running in )")
_STEP = re.compile(r"^Step (?P<index>\d+)/(?P<total>\d+) : (?P<instruction>.*)$")
_NON_ZERO = re.compile(r"returned a non-zero code: (?P<code>\d+)")
#: how a registry that cannot be reached shows in the engine's messages
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|dial tcp|connection reset|TLS handshake timeout|"
    r"server misbehaving|network is unreachable|EOF$|timeout exceeded|502 Bad Gateway|"
    r"503 Service Unavailable|504 Gateway Timeout", re.IGNORECASE)
_REFUSED = re.compile(r"unauthorized|denied|authentication required|forbidden|no basic auth",
                      re.IGNORECASE)

ENGINE_UNREACHABLE = (
    "cannot reach the Docker Engine ({reason}); start it (on a bare Debian machine: bash "
    ".ci/services), or point DOCKER_HOST at one"
)
STEP_FAILED = (
    "the image build failed at step {index}/{total}: {instruction}\n{reason}\n"
    "last lines of its log:\n{tail}"
)
PUSH_REFUSED = (
    "the registry {registry} refused the push of {reference}: {reason}\n"
    "log in first (docker login {registry}; in a workflow docker/login-action, or set "
    "SHIPML_REGISTRY_USERNAME and SHIPML_REGISTRY_PASSWORD); on GitHub Container Registry the "
    "job needs:\n  permissions:\n    contents: read\n    packages: write"
)
PUSH_UNREACHABLE = (
    "the registry {registry} could not be reached to push {reference} after {attempts} "
    "attempt(s): {reason}"
)


@dataclass
class BuildLog:
    """What the build printed, step by step: the current step and the tail of its lines."""

    step_index: int = 0
    step_total: int = 0
    instruction: str = ""
    cached_steps: int = 0
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))
    image_id: str = ""

    def feed(self, line: str) -> None:
        """Take one line of the build's output."""
        match = _STEP.match(line)
        if match:
            self.step_index = int(match["index"])
            self.step_total = int(match["total"])
            self.instruction = match["instruction"]
            self.tail.clear()
            return
        if line.strip() == "---> Using cache":
            self.cached_steps += 1
        text = _ANSI.sub("", line)
        if text.strip() and not _BOOKKEEPING.match(text):
            self.tail.append(text)


@dataclass(frozen=True)
class Built:
    """A built image: its id, the steps the build ran and how many came from the cache."""

    image_id: str
    steps: int
    cached_steps: int


def registry_of(repository: str) -> str:
    """Return the registry host of ``repository`` (docker.io for a bare name)."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


class Engine:
    """A connection to the Docker Engine; raise InfrastructureError when there is none."""

    def __init__(self, timeout_s: int = 1800) -> None:
        import docker
        from docker.errors import DockerException

        try:
            self.client = docker.from_env(timeout=timeout_s)
            self.client.ping()
        except DockerException as exc:
            raise InfrastructureError(ENGINE_UNREACHABLE.format(reason=first_line(exc))) from None
        self.api = self.client.api

    def close(self) -> None:
        """Close the connection."""
        self.client.close()

    def build(self, context: Path, dockerfile: str, reference: str, *,
              buildargs: Mapping[str, str], labels: Mapping[str, str],
              base_key: str, echo: Callable[[str], None]) -> Built:
        """Build ``context`` with ``dockerfile`` as ``reference`` on the host network, echoing
        each log line; return the image.

        Raises ConfigError for a failing step (the step and its last lines) or a base image
        that does not exist (naming ``base_key``), InfrastructureError when a registry that the
        base image comes from cannot be reached.
        """
        from docker.errors import APIError, DockerException

        progress = BuildLog()
        try:
            stream = self.api.build(
                path=str(context), dockerfile=dockerfile, tag=reference, buildargs=dict(buildargs),
                labels=dict(labels), network_mode="host", rm=True, forcerm=True, decode=True,
                pull=False)
            for line, error in _lines(stream):
                if error is not None:
                    raise _build_error(error, progress, base_key)
                progress.feed(line)
                echo(line)
        except APIError as exc:
            # Errors before the first step (a Dockerfile that does not parse, a bad argument).
            raise ConfigError(f"the image build was refused: {_explanation(exc)}") from None
        except DockerException as exc:
            raise InfrastructureError(ENGINE_UNREACHABLE.format(reason=first_line(exc))) from None
        image = self.api.inspect_image(reference)
        return Built(image_id=str(image["Id"]), steps=progress.step_total,
                     cached_steps=progress.cached_steps)

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        """Tag ``image_id`` as ``repository:tag``."""
        self.api.tag(image_id, repository, tag, force=True)

    def size(self, reference: str) -> int:
        """Return the size in bytes of the image ``reference`` (its layers, unpacked)."""
        return int(self.api.inspect_image(reference)["Size"])

    def history(self, reference: str) -> list[dict[str, Any]]:
        """Return the image's history, newest layer first."""
        return list(self.api.history(reference))

    def push(self, repository: str, tag: str, *, auth: Mapping[str, str] | None,
             retries: int, echo: Callable[[str], None], backoff_s: float = 1.0) -> str:
        """Push ``repository:tag`` and return the manifest digest the registry reports.

        Tries again ``retries`` times (``backoff_s``, doubling) while the registry cannot be
        reached; then raises InfrastructureError. A refusal (credentials, permissions) raises
        ConfigError naming the registry and the reason at once.
        """
        from docker.errors import APIError, DockerException

        registry = registry_of(repository)
        reference = f"{repository}:{tag}"
        reason = ""
        for attempt in range(retries + 1):
            if attempt:
                delay = backoff_s * 2 ** (attempt - 1)
                log.info("build: push of %s failed (%s); retry %d of %d in %.0f s", reference,
                         reason, attempt, retries, delay)
                time.sleep(delay)
            try:
                digest, error = self._push_once(repository, tag, auth, echo)
            except APIError as exc:
                digest, error = "", _explanation(exc)
            except DockerException as exc:
                raise InfrastructureError(ENGINE_UNREACHABLE.format(reason=first_line(exc))) from None
            if digest:
                return digest
            reason = error or "the engine reported no digest"
            if _REFUSED.search(reason) and not _UNREACHABLE.search(reason):
                raise ConfigError(PUSH_REFUSED.format(registry=registry, reference=reference,
                                                      reason=reason))
        raise InfrastructureError(PUSH_UNREACHABLE.format(
            registry=registry, reference=reference, attempts=retries + 1, reason=reason))

    def _push_once(self, repository: str, tag: str, auth: Mapping[str, str] | None,
                   echo: Callable[[str], None]) -> tuple[str, str]:
        digest = ""
        seen: set[tuple[str, str]] = set()
        kwargs: dict[str, Any] = {"auth_config": dict(auth)} if auth else {}
        for chunk in self.api.push(repository, tag=tag, stream=True, decode=True, **kwargs):
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail") or {}
                return "", str(chunk.get("error") or detail.get("message") or "unknown error")
            aux = chunk.get("aux") or {}
            if aux.get("Digest"):
                digest = str(aux["Digest"])
            status = str(chunk.get("status") or "")
            layer = str(chunk.get("id") or "")
            # One line per layer and outcome, not the progress bars.
            if status and status not in ("Pushing", "Preparing", "Waiting") and (layer, status) not in seen:
                seen.add((layer, status))
                echo(f"{layer}: {status}" if layer else status)
        return digest, ""


def _lines(stream: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, Mapping[str, Any] | None]]:
    # The engine sends text in chunks that may hold several lines or part of one.
    pending = ""
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            if pending:
                yield pending, None
                pending = ""
            yield "", chunk
            return
        text = chunk.get("stream")
        if not isinstance(text, str):
            continue
        pending += text
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line.rstrip("\r"), None
    if pending:
        yield pending, None


def _build_error(chunk: Mapping[str, Any], progress: BuildLog, base_key: str) -> Exception:
    detail = chunk.get("errorDetail") or {}
    message = str(chunk.get("error") or detail.get("message") or "unknown error").strip()
    tail = "\n".join(f"  {line}" for line in progress.tail) or "  (the step printed nothing)"
    if progress.instruction.upper().startswith("FROM") or progress.step_index == 0:
        if _UNREACHABLE.search(message):
            return InfrastructureError(f"{base_key}: the base image could not be pulled: {message}")
        if progress.step_index <= 1:
            return ConfigError(f"{base_key}: the base image cannot be had: {message}; build it "
                               "or pull it into the engine, or choose another")
    non_zero = _NON_ZERO.search(message)
    reason = f"its command exited with code {non_zero['code']}" if non_zero else message
    return ConfigError(STEP_FAILED.format(index=progress.step_index, total=progress.step_total,
                                          instruction=progress.instruction, reason=reason,
                                          tail=tail))


def _explanation(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    text = explanation.decode() if isinstance(explanation, bytes) else explanation
    return str(text or first_line(exc))
