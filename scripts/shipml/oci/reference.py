"""Image references: ``[registry/]repository[:tag][@sha256:digest]``, as Docker reads them."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from shipml.errors import ConfigError
from shipml.oci.media import is_digest

DOCKER_HUB = "docker.io"
#: where Docker Hub's registry API really answers
DOCKER_HUB_API = "registry-1.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
BAD_REFERENCE = ("{source}: {text!r} is not an image reference; write REGISTRY/REPOSITORY:TAG or "
                 "REGISTRY/REPOSITORY@sha256:DIGEST, e.g. ghcr.io/acme/model@sha256:…")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. ``registry`` is as written (``docker.io`` for Docker Hub)."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str, source: str = "image") -> Reference:
        """Return the reference ``text`` spells; raise ConfigError naming ``source`` when it is
        not one."""
        raw = text.strip()
        digest = ""
        if "@" in raw:
            raw, digest = raw.split("@", 1)
            if not is_digest(digest):
                raise ConfigError(BAD_REFERENCE.format(source=source, text=text))
        first, _, rest = raw.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"
                     or first.startswith("[")):
            registry, path = first, rest
        else:
            registry, path = DOCKER_HUB, raw
        tag = ""
        last_slash = path.rfind("/")
        colon = path.rfind(":")
        if colon > last_slash:
            path, tag = path[:colon], path[colon + 1:]
            if not _TAG.match(tag):
                raise ConfigError(BAD_REFERENCE.format(source=source, text=text))
        if registry == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        if not path or not _REPOSITORY.match(path):
            raise ConfigError(BAD_REFERENCE.format(source=source, text=text))
        return cls(registry=registry, repository=path, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        """Return ``registry/repository`` as cosign writes it in ``docker-reference``
        (Docker Hub as ``index.docker.io``)."""
        host = "index.docker.io" if self.registry == DOCKER_HUB else self.registry
        return f"{host}/{self.repository}"

    @property
    def api_host(self) -> str:
        """Return the host (and port) the registry API answers at."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def is_loopback(self) -> bool:
        """Return whether the registry is on this machine (plain HTTP is then allowed)."""
        host = self.registry.rsplit(":", 1)[0] if not self.registry.startswith("[") \
            else self.registry[1:].split("]", 1)[0]
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def with_digest(self, digest: str) -> Reference:
        """Return this reference pinned to ``digest`` (the tag dropped)."""
        return replace(self, tag="", digest=digest)

    def with_tag(self, tag: str) -> Reference:
        """Return this repository at ``tag``."""
        return replace(self, tag=tag, digest="")

    @property
    def identifier(self) -> str:
        """Return the digest, else the tag, else ``latest``: what the manifest API is asked for."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text
