"""A small OCI registry client: the distribution spec over ``requests``.

Blobs, manifests and indexes by tag and digest, the referrers API with the tag-schema fallback,
and authentication the way real registries ask for it (basic, or the bearer-token challenge of
GHCR, Docker Hub and ECR-compatible registries), with credentials from Docker's ``config.json``.

Public names: :class:`Reference` (parse ``registry/repository[:tag][@digest]``),
:class:`RegistryClient` (one registry, one session), :class:`Descriptor`, :class:`Manifest`,
:func:`sha256_digest`, the media types, and :class:`ManifestNotFound`.
"""

from __future__ import annotations

from shipml.oci.client import Manifest, ManifestNotFound, RegistryClient, RegistryOptions
from shipml.oci.media import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    sha256_digest,
)
from shipml.oci.reference import Reference

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "EMPTY_JSON",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "Manifest",
    "ManifestNotFound",
    "Reference",
    "RegistryClient",
    "RegistryOptions",
    "sha256_digest",
]
