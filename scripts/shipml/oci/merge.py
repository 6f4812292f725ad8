"""Adding descriptors to what a tag holds without losing what a concurrent writer adds.

cosign's ``sha256-<hex>.sig`` and ``.att`` tags and the referrers tag-schema index are sets kept
under one tag: adding one is read, add, write. The distribution API has no compare-and-swap on a
tag PUT, so two writers that read before either writes would each write their own set and the
first addition would be lost while both think they succeeded. :func:`add_to_tag` narrows and
checks that window:

1. read the tag (its manifest and digest) and write the union of what it holds and what is added,
   after the blobs the new manifest needs are uploaded;
2. read the tag again just before the PUT: when its digest changed meanwhile, merge again from
   the newer content (so a write follows the read it was merged from by one request);
3. after the PUT, read it back, and again ``RegistryOptions.settle_s`` later: it must still
   hold every descriptor that was there when it was read plus the added ones; when it does not
   (a writer that read before this write wrote after it), merge and write again.

What this guarantees, honestly: no addition is lost as long as no writer takes longer than
``settle_s`` between its last read and its PUT (one request). It writes at most
``MERGE_ATTEMPTS`` times, then raises InfrastructureError (exit 3); it never reports success for
an addition it did not see in the tag after the settle time.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shipml.errors import InfrastructureError
from shipml.oci.client import Manifest, RegistryClient, fallback_tag
from shipml.oci.media import MANIFEST_TYPES, OCI_INDEX, Descriptor, sha256_digest
from shipml.oci.reference import Reference

log = logging.getLogger("shipml.oci")

#: writes of one tag before giving up (each after a fresh read and merge)
MERGE_ATTEMPTS = 8

NOT_CONVERGED = ("registry {registry}: {repository}:{tag} kept changing while shipml added to "
                 "it ({attempts} writes, each overwritten by another writer before it settled); "
                 "another process is adding to the same tag: run again when it has finished")


@dataclass(frozen=True)
class TagContent:
    """A manifest to store under a tag, and the blobs it refers to that must be uploaded first."""

    data: bytes
    media_type: str
    blobs: tuple[bytes, ...] = ()


def same_descriptor(first: Descriptor, second: Descriptor) -> bool:
    """Return whether two descriptors name the same content (digest and annotations)."""
    return first.digest == second.digest and dict(first.annotations) == dict(second.annotations)


def add_to_tag(client: RegistryClient, repository: str, tag: str, added: Sequence[Descriptor],
               render: Callable[[list[Descriptor]], TagContent], *,
               accept: Sequence[str] = MANIFEST_TYPES,
               same: Callable[[Descriptor, Descriptor], bool] = same_descriptor,
               attempts: int = MERGE_ATTEMPTS) -> Manifest:
    """Add ``added`` to the descriptors (``layers``, or ``manifests`` of an index) under ``tag``,
    keeping every descriptor a concurrent writer adds; ``render`` turns the merged list into the
    manifest to store. Returns the manifest the tag holds once it settled with the additions.

    Raises InfrastructureError when the tag keeps being overwritten for ``attempts`` writes;
    ConfigError/InfrastructureError from the client when the registry refuses or is down.
    """
    target = Reference(client.registry, repository, tag=tag)
    settle_s = client.options.settle_s
    for attempt in range(1, attempts + 1):
        current = client.find_manifest(target, accept)
        wanted = _union(current.layers() if current is not None else [], added, same)
        if current is None or not _holds(current, wanted, same):
            current = _write_fresh(client, target, current, wanted, render, accept, same)
            if current is None:
                continue  # changed between the read and the write: merge from the newer one
        settled = _settled(client, target, wanted, accept, same, settle_s)
        if settled is not None:
            return settled
        log.info("registry %s: %s:%s lost an addition to a concurrent writer (attempt %d of "
                 "%d); merging again", client.registry, repository, tag, attempt, attempts)
        time.sleep(random.uniform(0, settle_s / 2))  # jitter: writers out of step
    raise InfrastructureError(NOT_CONVERGED.format(registry=client.registry, repository=repository,
                                                   tag=tag, attempts=attempts))


def push_referrer(client: RegistryClient, repository: str, data: bytes, media_type: str,
                  subject: str, artifact_type: str = "") -> str:
    """Store a manifest that refers to ``subject`` by its digest; where the registry did not
    index it (no ``OCI-Subject`` header), add it to the tag-schema fallback index as the
    distribution spec says clients must. Return the manifest's digest.

    Raises what :func:`add_to_tag` and the client raise (ConfigError, InfrastructureError).
    """
    digest = sha256_digest(data)
    response = client.put_manifest(repository, digest, data, media_type)
    if response.headers.get("OCI-Subject") == subject:
        return digest
    entry = Descriptor(media_type, digest, len(data), artifact_type=artifact_type)
    # Read-modify-write of a tag other clients add to as well: merged and checked.
    add_to_tag(client, repository, fallback_tag(subject), [entry], _fallback_index,
               accept=(OCI_INDEX,), same=_same_digest)
    return digest


def _fallback_index(entries: Sequence[Descriptor]) -> TagContent:
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [entry.to_dict() for entry in entries]}
    return TagContent(json.dumps(document, separators=(",", ":")).encode(), OCI_INDEX)


def _same_digest(first: Descriptor, second: Descriptor) -> bool:
    return first.digest == second.digest


def _write_fresh(client: RegistryClient, target: Reference, current: Manifest | None,
                 wanted: list[Descriptor], render: Callable[[list[Descriptor]], TagContent],
                 accept: Sequence[str], same: Callable[[Descriptor, Descriptor], bool]
                 ) -> Manifest | None:
    """Write ``wanted`` unless the tag changed since ``current`` was read; return what was
    written, or None when the tag changed (the caller merges again)."""
    content = render(wanted)
    for blob in content.blobs:
        client.put_blob(target.repository, blob)
    latest = client.find_manifest(target, accept)
    if _digest(latest) != _digest(current):
        return None
    client.put_manifest(target.repository, target.tag, content.data, content.media_type)
    return Manifest(data=content.data, media_type=content.media_type,
                    digest=sha256_digest(content.data))


def _settled(client: RegistryClient, target: Reference, wanted: list[Descriptor],
             accept: Sequence[str], same: Callable[[Descriptor, Descriptor], bool],
             settle_s: float) -> Manifest | None:
    """Return the tag's manifest when it holds ``wanted`` now and ``settle_s`` later, else None."""
    seen: Manifest | None = None
    for pause in (0.0, settle_s):
        time.sleep(pause)
        seen = client.find_manifest(target, accept)
        if seen is None or not _holds(seen, wanted, same):
            return None
    return seen


def _union(existing: list[Descriptor], added: Sequence[Descriptor],
           same: Callable[[Descriptor, Descriptor], bool]) -> list[Descriptor]:
    merged = list(existing)
    for descriptor in added:
        if not any(same(descriptor, item) for item in merged):
            merged.append(descriptor)
    return merged


def _holds(manifest: Manifest, wanted: Sequence[Descriptor],
           same: Callable[[Descriptor, Descriptor], bool]) -> bool:
    present = manifest.layers()
    return all(any(same(descriptor, item) for item in present) for descriptor in wanted)


def _digest(manifest: Manifest | None) -> str:
    return manifest.digest if manifest is not None else ""
