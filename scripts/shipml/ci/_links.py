"""Links to the repository a run comes from: one rule for every link shipml writes.

``GITHUB_SERVER_URL`` + ``GITHUB_REPOSITORY`` win when the repository is an ``owner/name``; else
the git remote gives the link when it is an https or ssh URL (or ``user@host:owner/name``) of a
host and a repository path. Anything else gives no link, never a broken one: act sets
``GITHUB_REPOSITORY`` to the remote itself when it is not a GitHub URL (a local path, a
``file://`` URL), which used to become ``https://github.com//tmp/…``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

DEFAULT_SERVER = "https://github.com"
#: GitHub's owner/name (what GITHUB_REPOSITORY holds on GitHub's runners)
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
#: git's scp-like form [user@]host:path, recognised only with no slash before the first colon
_SCP = re.compile(r"^(?:[^@/:]+@)?(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*):(?P<path>[^/].*)$")
#: a path segment of a repository on a git host (GitLab nests groups: a/b/c)
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_WEB = ("https", "http")
_SSH = ("ssh", "git", "git+ssh", "ssh+git")


def repository_name(value: str | None) -> str:
    """Return ``value`` when it is a GitHub ``owner/name``, else ''."""
    value = (value or "").strip()
    return value if _REPOSITORY.match(value) and ".." not in value else ""


def server_url(environ: Mapping[str, str]) -> str:
    """Return ``GITHUB_SERVER_URL`` without a trailing slash when it is an http(s) URL with a
    host, else https://github.com."""
    server = (environ.get("GITHUB_SERVER_URL") or "").strip().rstrip("/")
    parts = urlsplit(server)
    if parts.scheme in _WEB and parts.hostname and not parts.username and not parts.password:
        return server
    return DEFAULT_SERVER


def repository_url(environ: Mapping[str, str], remote: str = "") -> str:
    """Return the web address of the repository: ``GITHUB_SERVER_URL/GITHUB_REPOSITORY`` when
    GITHUB_REPOSITORY is an owner/name, else :func:`remote_url` of ``remote``; '' when neither
    gives a link."""
    name = repository_name(environ.get("GITHUB_REPOSITORY"))
    if name:
        return f"{server_url(environ)}/{name}"
    return remote_url(remote)


def remote_url(remote: str) -> str:
    """Return the https (or http) address of a git remote, without credentials, or '' for a
    local path, a ``file://`` URL or anything that is not an https/ssh URL of a host and a
    repository path (owner/name). An ssh port is not the web server's: it is dropped."""
    remote = (remote or "").strip()
    if not remote:
        return ""
    scp = _SCP.match(remote)
    if scp and "://" not in remote:
        return _link("https", scp["host"], scp["path"])
    parts = urlsplit(remote)
    try:
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme in _WEB and parts.hostname:
        host = f"{parts.hostname}:{port}" if port else parts.hostname
        return _link(parts.scheme, host, parts.path)
    if parts.scheme in _SSH and parts.hostname:
        return _link("https", parts.hostname, parts.path)
    return ""


def _link(scheme: str, host: str, path: str) -> str:
    segments = path.strip("/").removesuffix(".git").split("/")
    if len(segments) < 2 or not all(_SEGMENT.match(s) and s not in (".", "..") for s in segments):
        return ""
    return urlunsplit((scheme, host, "/".join(segments), "", ""))
