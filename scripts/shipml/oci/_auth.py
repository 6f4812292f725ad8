"""Registry credentials and the authentication challenge flow.

Credentials come from Docker's ``config.json`` (``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``): an ``auths`` entry (``auth`` = base64 ``user:password``, or
``username``/``password``, or an ``identitytoken``), or a credential helper
(``credHelpers``/``credsStore``: ``docker-credential-<name> get``). They are never printed:
:class:`Credentials` hides its secret from ``repr``.

A registry answers 401 with ``WWW-Authenticate``: ``Basic realm=…`` (send the credentials), or
``Bearer realm=…,service=…,scope=…`` (ask the realm for a token with those parameters, with the
credentials when there are any, then send the token).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shipml.errors import ConfigError

log = logging.getLogger("shipml.oci")

_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io",
                   "registry-1.docker.io")
BAD_DOCKER_CONFIG = ("{path}: not a Docker config file ({reason}); fix it or point DOCKER_CONFIG at "
                     "a folder holding a valid config.json")


@dataclass(frozen=True)
class Credentials:
    """A user name and its secret (password, token) for one registry; the secret never prints."""

    username: str
    secret: str = field(repr=False)
    #: an OAuth2 refresh token (``identitytoken``) rather than a password
    identity_token: bool = False

    def basic_header(self) -> str:
        """Return the ``Authorization`` value for basic authentication."""
        raw = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: the scheme and its parameters."""

    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """Return the challenge ``header`` states, or None when it names no scheme."""
    text = header.strip()
    if not text:
        return None
    scheme, _, rest = text.partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        quoted = match.group(2)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group(3)
        params[match.group(1).lower()] = value
    return Challenge(scheme=scheme.lower(), params=params)


def docker_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return the ``config.json`` Docker reads: ``$DOCKER_CONFIG/config.json``, else the home
    folder's ``.docker/config.json``."""
    env = os.environ if environ is None else environ
    folder = env.get("DOCKER_CONFIG", "").strip()
    return (Path(folder) if folder else Path.home() / ".docker") / "config.json"


def credentials_for(registry: str, environ: Mapping[str, str] | None = None) -> Credentials | None:
    """Return the credentials Docker's config holds for ``registry`` (host[:port]), or None.

    Raises ConfigError when the config file exists but is not JSON, or a credential helper it
    names is missing or fails.
    """
    path = docker_config_path(environ)
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(BAD_DOCKER_CONFIG.format(path=path, reason=type(exc).__name__)) from None
    if not isinstance(document, dict):
        raise ConfigError(BAD_DOCKER_CONFIG.format(path=path, reason="not a JSON object"))
    keys = _keys_for(registry)
    helpers = document.get("credHelpers") or {}
    for key in keys:
        if isinstance(helpers, dict) and isinstance(helpers.get(key), str):
            return _from_helper(helpers[key], key)
    auths = document.get("auths") or {}
    if isinstance(auths, dict):
        for stored, entry in auths.items():
            if _normalise(stored) in keys and isinstance(entry, dict):
                found = _from_entry(entry, path)
                if found is not None:
                    return found
    store = document.get("credsStore")
    if isinstance(store, str) and store:
        return _from_helper(store, keys[0], missing_ok=True)
    return None


def _keys_for(registry: str) -> tuple[str, ...]:
    if registry in DOCKER_HUB_KEYS:
        return DOCKER_HUB_KEYS
    return (registry,)


def _normalise(stored: str) -> str:
    if stored in DOCKER_HUB_KEYS:
        return stored
    text = re.sub(r"^[a-z]+://", "", stored)
    return text.split("/", 1)[0]


def _from_entry(entry: Mapping[str, object], path: Path) -> Credentials | None:
    token = entry.get("identitytoken")
    auth = entry.get("auth")
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    if isinstance(auth, str) and auth:
        try:
            username, _, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(BAD_DOCKER_CONFIG.format(
                path=path, reason="an 'auth' value is not base64 of user:password")) from None
    if isinstance(token, str) and token:
        return Credentials(username=username or "<token>", secret=token, identity_token=True)
    if username or password:
        return Credentials(username=username, secret=password)
    return None


def _from_helper(helper: str, server: str, *, missing_ok: bool = False) -> Credentials | None:
    program = f"docker-credential-{helper}"
    executable = shutil.which(program)
    if executable is None:
        if missing_ok:
            return None
        raise ConfigError(f"Docker's config names the credential helper {helper!r} for {server}, "
                          f"but {program} is not on PATH; install it or remove the entry")
    completed = subprocess.run([executable, "get"], input=server, capture_output=True, text=True,
                               timeout=60, check=False)
    if completed.returncode != 0:
        if "credentials not found" in completed.stdout + completed.stderr:
            return None
        # The helper's own output may hold secrets; only its exit status is shown.
        raise ConfigError(f"{program} get failed for {server} (exit {completed.returncode})")
    try:
        record = json.loads(completed.stdout)
        username, secret = str(record["Username"]), str(record["Secret"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ConfigError(f"{program} get answered something that is not its JSON") from None
    log.debug("credentials for %s from %s", server, program)
    return Credentials(username=username, secret=secret, identity_token=username == "<token>")
