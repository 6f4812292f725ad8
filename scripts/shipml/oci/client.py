"""The registry client: one registry, one ``requests`` session, the distribution spec's calls.

Every request is retried when the registry cannot be reached or answers 429/5xx; after the last
attempt it raises :class:`~shipml.errors.InfrastructureError` (exit 3) naming the registry. A
refusal (401 after authenticating, 403, another 4xx) is the user's to fix: ConfigError (exit 2)
with the registry's own reason. A missing manifest is :class:`ManifestNotFound`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from shipml.errors import ConfigError, InfrastructureError
from shipml.oci._auth import Challenge, Credentials, credentials_for, parse_challenge
from shipml.oci.media import MANIFEST_TYPES, OCI_INDEX, Descriptor, sha256_digest
from shipml.oci.reference import Reference

log = logging.getLogger("shipml.oci")

#: the largest manifest or signature blob read into memory (the spec's manifest limit is 4 MiB)
MAX_DOCUMENT_BYTES = 16 * 2**20
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

UNREACHABLE = ("registry {registry} unreachable after {attempts} attempts ({reason}); check that "
               "it is up and that the address is right")
REFUSED = ("registry {registry} refused {what} ({status} {code}: {reason}){hint}")
LOGIN_HINT = ("; log in first (docker login {registry}, or the docker/login-action step) so that "
              "Docker's config.json (or $DOCKER_CONFIG) holds credentials for it")


class ManifestNotFound(ConfigError):
    """The registry has no manifest under that tag or digest (exit 2)."""


@dataclass(frozen=True)
class RegistryOptions:
    """How the client talks to a registry."""

    #: attempts after the first when the registry is unreachable or answers 429/5xx
    retries: int = 3
    #: seconds before the first retry; doubled for each next one
    backoff_s: float = 0.5
    timeout_s: float = 30.0
    #: None: plain HTTP for loopback registries (as Docker does), HTTPS for every other one
    plain_http: bool | None = None
    #: None: read them from Docker's config.json
    credentials: Credentials | None = None
    #: seconds an addition to a shared tag (.sig, .att, the referrers index) must stay in it
    #: before it counts as stored; longer than any other writer's read-to-write gap
    settle_s: float = 1.0


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry stored it: the exact bytes, type and digest."""

    data: bytes
    media_type: str
    digest: str

    def document(self) -> dict[str, Any]:
        """Return the parsed JSON object; raise ConfigError when it is not one."""
        try:
            parsed = json.loads(self.data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ConfigError(f"manifest {self.digest} is not JSON") from None
        if not isinstance(parsed, dict):
            raise ConfigError(f"manifest {self.digest} is not a JSON object")
        return parsed

    def layers(self) -> list[Descriptor]:
        """Return the layer descriptors of an image manifest (``manifests`` of an index)."""
        document = self.document()
        try:
            return [Descriptor.from_dict(item)
                    for item in document.get("layers") or document.get("manifests") or []]
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"manifest {self.digest} has a malformed descriptor") from None


class RegistryClient:
    """Talks to one registry (``host[:port]``, ``docker.io`` for Docker Hub)."""

    def __init__(self, registry: str, options: RegistryOptions | None = None,
                 session: requests.Session | None = None) -> None:
        self.registry = registry
        self.options = options or RegistryOptions()
        reference = Reference(registry=registry, repository="x")
        plain = self.options.plain_http
        scheme = "http" if (plain if plain is not None else reference.is_loopback) else "https"
        self.base_url = f"{scheme}://{reference.api_host}"
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = "shipml-oci/1"
        self._credentials = self.options.credentials
        self._credentials_read = self.options.credentials is not None
        #: the Authorization header per repository (bearer tokens are scoped to one)
        self._authorization: dict[str, str] = {}

    # --- manifests ------------------------------------------------------------------------

    def get_manifest(self, reference: Reference, accept: Sequence[str] = MANIFEST_TYPES) -> Manifest:
        """Return the manifest ``reference`` names (by its digest, else its tag).

        Raises ManifestNotFound when there is none, ConfigError when a manifest fetched by digest
        does not hash to it.
        """
        response = self.request("GET", f"/v2/{reference.repository}/manifests/{reference.identifier}",
                                reference.repository, headers={"Accept": ", ".join(accept)},
                                missing_ok=True)
        if response.status_code == 404:
            raise ManifestNotFound(f"{reference}: no such manifest in the registry")
        data = _read_limited(response, f"manifest {reference}")
        digest = sha256_digest(data)
        if reference.digest and digest != reference.digest:
            raise ConfigError(f"{reference}: the registry returned a manifest whose digest is "
                              f"{digest}; refusing it")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if not media_type or media_type == "application/json":
            media_type = str(_json_object(data).get("mediaType") or "")
        return Manifest(data=data, media_type=media_type, digest=digest)

    def find_manifest(self, reference: Reference,
                      accept: Sequence[str] = MANIFEST_TYPES) -> Manifest | None:
        """Return the manifest ``reference`` names, or None when the registry has none."""
        try:
            return self.get_manifest(reference, accept)
        except ManifestNotFound:
            return None

    def resolve(self, reference: Reference) -> str:
        """Return the digest of the manifest ``reference`` names (its own digest when pinned).

        Raises ManifestNotFound when there is none.
        """
        return self.get_manifest(reference).digest

    def put_manifest(self, repository: str, tag_or_digest: str, data: bytes,
                     media_type: str) -> requests.Response:
        """Store a manifest under a tag (or its digest); return the registry's response (its
        ``OCI-Subject`` header says whether it indexed a ``subject``)."""
        response = self.request("PUT", f"/v2/{repository}/manifests/{tag_or_digest}", repository,
                                headers={"Content-Type": media_type}, data=data, push=True)
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored != sha256_digest(data):
            raise InfrastructureError(f"registry {self.registry} stored the manifest as {stored}, "
                                      f"not {sha256_digest(data)}")
        return response

    # --- blobs ----------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: str) -> bool:
        """Return whether the repository holds the blob ``digest``."""
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", repository,
                                missing_ok=True)
        return response.status_code == 200

    def get_blob(self, repository: str, digest: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
        """Return the blob ``digest``; raise ConfigError when it is missing, too large or does
        not hash to its digest."""
        response = self.request("GET", f"/v2/{repository}/blobs/{digest}", repository,
                                missing_ok=True)
        if response.status_code == 404:
            raise ConfigError(f"{self.registry}/{repository}: blob {digest} is missing")
        data = _read_limited(response, f"blob {digest}", max_bytes)
        if sha256_digest(data) != digest:
            raise ConfigError(f"{self.registry}/{repository}: blob {digest} does not hash to its "
                              "digest; refusing it")
        return data

    def put_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` unless the repository has it already; return its digest."""
        digest = sha256_digest(data)
        if self.blob_exists(repository, digest):
            return digest
        started = self.request("POST", f"/v2/{repository}/blobs/uploads/", repository, push=True)
        location = started.headers.get("Location")
        if not location:
            raise InfrastructureError(f"registry {self.registry} started an upload without a "
                                      "Location header")
        url = urljoin(self.base_url + "/", location)
        url += ("&" if urlsplit(url).query else "?") + f"digest={digest}"
        self.request("PUT", url, repository, data=data, push=True,
                     headers={"Content-Type": "application/octet-stream"})
        return digest

    # --- referrers ------------------------------------------------------------------------

    def referrers(self, repository: str, digest: str, artifact_type: str = "") -> list[Descriptor]:
        """Return the manifests whose ``subject`` is ``digest``: the referrers API, or the
        tag-schema fallback (an index under ``sha256-<hex>``) where the registry has no such API.
        """
        params = {"artifactType": artifact_type} if artifact_type else None
        response = self.request("GET", f"/v2/{repository}/referrers/{digest}", repository,
                                headers={"Accept": OCI_INDEX}, params=params, missing_ok=True)
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if response.status_code == 200 and content_type == OCI_INDEX:
            found = Manifest(_read_limited(response, "referrers"), OCI_INDEX, "").layers()
        else:
            fallback = self.find_manifest(Reference(self.registry, repository,
                                                    tag=fallback_tag(digest)), (OCI_INDEX,))
            found = fallback.layers() if fallback is not None else []
        if artifact_type:
            found = [item for item in found if item.artifact_type == artifact_type]
        return found

    def tags(self, repository: str) -> list[str]:
        """Return the repository's tags (first page)."""
        response = self.request("GET", f"/v2/{repository}/tags/list", repository, missing_ok=True)
        if response.status_code == 404:
            return []
        return [str(tag) for tag in _json_object(response.content).get("tags") or []]

    # --- transport ------------------------------------------------------------------------

    def request(self, method: str, path_or_url: str, repository: str, *,
                headers: Mapping[str, str] | None = None, data: bytes | None = None,
                params: Mapping[str, str] | None = None, push: bool = False,
                missing_ok: bool = False) -> requests.Response:
        """Send one registry request with retries and authentication; return the response.

        ``missing_ok`` lets a 404 through to the caller. Raises InfrastructureError when the
        registry stays unreachable, ConfigError when it refuses.
        """
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        authenticated = False
        while True:
            sent = dict(headers or {})
            if repository in self._authorization:
                sent["Authorization"] = self._authorization[repository]
            response = self._send(method, url, sent, data, params)
            if response.status_code == 401 and not authenticated:
                authenticated = True
                self._authenticate(response, repository, push)
                continue
            break
        if response.status_code < 400 or (missing_ok and response.status_code == 404):
            return response
        what = f"{method} {urlsplit(url).path}"
        hint = LOGIN_HINT.format(registry=self.registry) if response.status_code in (401, 403) \
            else ""
        code, reason = _registry_error(response)
        raise ConfigError(REFUSED.format(registry=self.registry, what=what,
                                         status=response.status_code, code=code, reason=reason,
                                         hint=hint))

    def _send(self, method: str, url: str, headers: Mapping[str, str], data: bytes | None,
              params: Mapping[str, str] | None) -> requests.Response:
        attempts = self.options.retries + 1
        reason = ""
        for attempt in range(1, attempts + 1):
            try:
                response = self._session.request(method, url, headers=dict(headers), data=data,
                                                 params=params, timeout=self.options.timeout_s,
                                                 allow_redirects=True)
            except (requests.ConnectionError, requests.Timeout) as exc:
                reason = _connection_reason(exc)
            else:
                if response.status_code not in _RETRY_STATUSES:
                    return response
                reason = f"HTTP {response.status_code}"
                if attempt == attempts:
                    return response
            if attempt < attempts:
                delay = self.options.backoff_s * 2 ** (attempt - 1)
                log.info("registry %s: %s (attempt %d of %d); retrying in %.1f s",
                         self.registry, reason, attempt, attempts, delay)
                time.sleep(delay)
        raise InfrastructureError(UNREACHABLE.format(registry=self.registry, attempts=attempts,
                                                     reason=reason))

    def _credentials_for_registry(self) -> Credentials | None:
        if not self._credentials_read:
            self._credentials = credentials_for(self.registry)
            self._credentials_read = True
        return self._credentials

    def _authenticate(self, response: requests.Response, repository: str, push: bool) -> None:
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        credentials = self._credentials_for_registry()
        if challenge is not None and challenge.scheme == "bearer":
            self._authorization[repository] = "Bearer " + self._token(
                challenge, repository, push, credentials)
        elif credentials is not None and not credentials.identity_token:
            self._authorization[repository] = credentials.basic_header()

    def _token(self, challenge: Challenge, repository: str, push: bool,
               credentials: Credentials | None) -> str:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise InfrastructureError(f"registry {self.registry} asked for a token from "
                                      f"{realm!r}, which is not an HTTP(S) address")
        realm_host = Reference(registry=urlsplit(realm).netloc or "x", repository="x")
        if credentials is not None and realm.startswith("http://") and not realm_host.is_loopback:
            raise ConfigError(f"registry {self.registry} asked for credentials over plain HTTP "
                              f"({realm}); refusing to send them")
        scope = challenge.params.get("scope") or \
            f"repository:{repository}:{'pull,push' if push else 'pull'}"
        form = {"service": challenge.params.get("service", ""), "scope": scope}
        headers: dict[str, str] = {}
        if credentials is not None and credentials.identity_token:
            body = {**form, "grant_type": "refresh_token", "refresh_token": credentials.secret,
                    "client_id": "shipml"}
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = self._send("POST", realm, headers, _form(body), None)
        else:
            if credentials is not None:
                headers["Authorization"] = credentials.basic_header()
            response = self._send("GET", realm, headers, None, form)
        if response.status_code >= 400:
            code, reason = _registry_error(response)
            raise ConfigError(REFUSED.format(
                registry=self.registry, what=f"a token for {scope}", status=response.status_code,
                code=code, reason=reason, hint=LOGIN_HINT.format(registry=self.registry)))
        record = _json_object(response.content)
        token = record.get("token") or record.get("access_token")
        if not isinstance(token, str) or not token:
            raise InfrastructureError(f"the token server of registry {self.registry} answered "
                                      "without a token")
        return token


def fallback_tag(digest: str) -> str:
    """Return the tag-schema tag of ``digest``: ``sha256-<hex>``."""
    return digest.replace(":", "-")


def _read_limited(response: requests.Response, what: str,
                  max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
    data = response.content
    if len(data) > max_bytes:
        raise ConfigError(f"{what} is {len(data)} bytes, more than the {max_bytes} shipml reads")
    return data


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _form(fields: Mapping[str, str]) -> bytes:
    from urllib.parse import urlencode

    return urlencode(fields).encode()


def _registry_error(response: requests.Response) -> tuple[str, str]:
    errors = _json_object(response.content).get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return str(first.get("code") or ""), str(first.get("message") or "")
    return "", (response.reason or "").strip() or "no reason given"


def _connection_reason(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host",
                   "Temporary failure in name resolution", "Connection reset"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
