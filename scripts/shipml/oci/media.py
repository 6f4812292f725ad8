"""Media types, descriptors and digests of the OCI image and distribution specs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
#: the empty descriptor of image-spec 1.1 (config of artifacts)
EMPTY_JSON = "application/vnd.oci.empty.v1+json"
#: every manifest media type the client asks for by default
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def sha256_digest(data: bytes) -> str:
    """Return the ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(text: str) -> bool:
    """Return whether ``text`` is a sha256 digest in canonical form."""
    return bool(_DIGEST.match(text))


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest says about one blob or manifest."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str = ""

    @classmethod
    def of(cls, data: bytes, media_type: str, annotations: Mapping[str, str] | None = None,
           artifact_type: str = "") -> Descriptor:
        """Return the descriptor of ``data`` with its digest and size."""
        return cls(media_type, sha256_digest(data), len(data), dict(annotations or {}),
                   artifact_type)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON mapping in the spec's field order, empty fields left out."""
        record: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                                  "size": self.size}
        if self.annotations:
            record["annotations"] = dict(self.annotations)
        if self.artifact_type:
            record["artifactType"] = self.artifact_type
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Descriptor:
        """Build a descriptor from its JSON mapping; raise KeyError/TypeError when malformed."""
        annotations = record.get("annotations") or {}
        if not isinstance(annotations, Mapping):
            raise TypeError("annotations must be an object")
        return cls(str(record["mediaType"]), str(record["digest"]), int(record["size"]),
                   {str(k): str(v) for k, v in annotations.items()},
                   str(record.get("artifactType") or ""))
