"""Signing and verifying images in the registry with the built-in signer.

:func:`sign_image` writes what ``cosign sign --key`` writes (and :func:`attest_image` what
``cosign attest --key`` writes); :func:`verify_image` checks what ``cosign verify --key`` and
``cosign verify-attestation --key`` check. The formats are in :mod:`shipml.sign.formats`; the
registry calls in :mod:`shipml.oci`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipml.errors import ConfigError
from shipml.oci import OCI_MANIFEST, Descriptor, Reference, RegistryClient
from shipml.oci.client import fallback_tag
from shipml.oci.merge import TagContent, add_to_tag
from shipml.results import Check
from shipml.sign import formats
from shipml.sign.attestation import PREDICATE_TYPE, judge_predicate
from shipml.sign.keys import PrivateKey, PublicKey, key_id, sign_bytes, verify_bytes

SIGNATURE_SUFFIX = ".sig"
ATTESTATION_SUFFIX = ".att"


@dataclass(frozen=True)
class Attached:
    """A signature or attestation stored in the registry: its image's tag and digest."""

    ref: Reference
    digest: str


def signature_tag(digest: str) -> str:
    """Return the tag cosign stores the signatures of ``digest`` under."""
    return fallback_tag(digest) + SIGNATURE_SUFFIX


def attestation_tag(digest: str) -> str:
    """Return the tag cosign stores the attestations of ``digest`` under."""
    return fallback_tag(digest) + ATTESTATION_SUFFIX


def resolve_image(client: RegistryClient, image: Reference) -> Reference:
    """Return ``image`` pinned to the digest of its manifest; raise ManifestNotFound when the
    registry has no such image."""
    return image.with_digest(client.resolve(image))


def sign_image(client: RegistryClient, image: Reference, key: PrivateKey,
               annotations: Mapping[str, str] | None = None) -> Attached:
    """Sign the pinned ``image`` and store the signature as cosign does: a layer of the image
    tagged ``sha256-<hex>.sig``, added to the signatures already there."""
    payload = formats.simple_signing_payload(image.name, image.digest, annotations)
    layer = formats.signature_layer(payload, sign_bytes(key, payload))
    return _append_layer(client, image.with_tag(signature_tag(image.digest)), layer, payload)


def attest_image(client: RegistryClient, image: Reference, key: PrivateKey,
                 predicate: Mapping[str, Any], predicate_type: str = PREDICATE_TYPE) -> Attached:
    """Attach a signed in-toto statement about the pinned ``image`` (a DSSE envelope, layer of
    the image tagged ``sha256-<hex>.att``)."""
    statement = formats.in_toto_statement(image.name, image.digest, predicate_type, predicate)
    signature = sign_bytes(key, formats.pae(formats.IN_TOTO, statement))
    envelope = formats.dsse_envelope(formats.IN_TOTO, statement, signature)
    layer = formats.attestation_layer(envelope, predicate_type)
    return _append_layer(client, image.with_tag(attestation_tag(image.digest)), layer, envelope)


def _append_layer(client: RegistryClient, target: Reference, layer: Descriptor,
                  blob: bytes) -> Attached:
    # Other signers add to the same tag at the same time: read-modify-write, merged and checked
    # (shipml.oci.merge), so that every signature survives.
    client.put_blob(target.repository, blob)

    def signature_image(layers: list[Descriptor]) -> TagContent:
        config, manifest = formats.signature_image(layers)
        return TagContent(manifest, OCI_MANIFEST, blobs=(config,))

    stored = add_to_tag(client, target.repository, target.tag, [layer], signature_image,
                        same=_same_layer)
    return Attached(ref=target, digest=stored.digest)


def _same_layer(first: Descriptor, second: Descriptor) -> bool:
    return (first.digest == second.digest and first.annotations.get(formats.SIGNATURE_ANNOTATION)
            == second.annotations.get(formats.SIGNATURE_ANNOTATION))


# --- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """What verify concluded about one image: its digest and the checks, in order."""

    image: Reference
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        """Return whether every check passed."""
        return all(check.status == "pass" for check in self.checks)


def verify_image(client: RegistryClient, image: Reference, key: PublicKey, *,
                 key_name: str = "the public key", require_gates: bool = False,
                 required: Sequence[str] = (), model_sha256: str = "") -> Verification:
    """Check that ``image`` (by tag or digest) carries a signature by ``key`` that covers its
    digest, and with ``require_gates`` an attestation by ``key`` that says every gate passed.

    Returns the checks; raises ManifestNotFound when the image itself is missing, and
    ConfigError/InfrastructureError when the registry refuses or cannot be reached.
    """
    pinned = resolve_image(client, image)
    resolved = "" if image.digest else f" (tag {image.tag or 'latest'} points at it)"
    checks = [_check_signature(client, pinned, key, key_name, resolved)]
    if require_gates:
        checks += _check_attestation(client, pinned, key, key_name, required, model_sha256)
    return Verification(image=pinned, checks=tuple(checks))


def _check_signature(client: RegistryClient, image: Reference, key: PublicKey, key_name: str,
                     resolved: str) -> Check:
    name = f"the image is signed by {key_name}"
    target = image.with_tag(signature_tag(image.digest))
    manifest = client.find_manifest(target)
    if manifest is None:
        return Check(name, "fail", detail=f"no signature for {image}{resolved}: the registry has "
                                          f"no {target.tag} tag")
    layers = [layer for layer in manifest.layers() if layer.media_type == formats.SIMPLE_SIGNING]
    if not layers:
        return Check(name, "fail", detail=f"{target} holds no simple-signing layer")
    problems: list[str] = []
    for number, layer in enumerate(layers, 1):
        signature = formats.signature_of(layer)
        if signature is None:
            problems.append(f"signature {number}: its {formats.SIGNATURE_ANNOTATION} annotation "
                            "is missing or not base64")
            continue
        payload = client.get_blob(image.repository, layer.digest)
        if not verify_bytes(key, signature, payload):
            problems.append(f"signature {number} does not verify with {key_name} (another key "
                            "made it, or the signature or its payload was changed)")
            continue
        try:
            claims = formats.parse_simple_signing(payload)
        except ValueError as exc:
            problems.append(f"signature {number}: {exc}")
            continue
        if claims.type != formats.SIGNATURE_TYPE:
            problems.append(f"signature {number} has critical.type {claims.type!r}")
        elif claims.manifest_digest != image.digest:
            problems.append(f"signature {number} is valid but covers {claims.manifest_digest}, "
                            f"not this image's {image.digest}")
        else:
            return Check(name, "pass", detail=f"signature {number} of {len(layers)} in "
                                              f"{target.tag} covers {image.digest}")
    return Check(name, "fail", detail=f"no valid signature for {image}{resolved}: "
                                      + "; ".join(problems))


def _check_attestation(client: RegistryClient, image: Reference, key: PublicKey, key_name: str,
                       required: Sequence[str], model_sha256: str) -> list[Check]:
    name = f"a gates attestation by {key_name} covers the image"
    target = image.with_tag(attestation_tag(image.digest))
    manifest = client.find_manifest(target)
    if manifest is None:
        return [Check(name, "fail", detail=f"no attestation for {image}: the registry has no "
                                           f"{target.tag} tag; run shipml sign with attest: true")]
    problems: list[str] = []
    newest: tuple[Check, list[Check]] | None = None
    layers = [layer for layer in manifest.layers() if layer.media_type == formats.DSSE_ENVELOPE]
    for number, layer in enumerate(layers, 1):
        if layer.annotations.get(formats.PREDICATE_TYPE_ANNOTATION, PREDICATE_TYPE) != PREDICATE_TYPE:
            continue
        outcome = _read_statement(client.get_blob(image.repository, layer.digest), key, key_name,
                                  image)
        if isinstance(outcome, str):
            problems.append(f"attestation {number}: {outcome}")
            continue
        found = Check(name, "pass", detail=f"attestation {number} of {len(layers)} in "
                                           f"{target.tag}")
        newest = (found, judge_predicate(outcome.get("predicate"), required=required,
                                         model_sha256=model_sha256))
    if newest is None:
        detail = "; ".join(problems) or f"{target.tag} holds no {PREDICATE_TYPE} attestation"
        return [Check(name, "fail", detail=detail)]
    # The last layer is the latest attestation: a re-run of the gates replaces the verdict.
    return [newest[0], *newest[1]]


def _read_statement(envelope_bytes: bytes, key: PublicKey, key_name: str,
                    image: Reference) -> dict[str, Any] | str:
    try:
        envelope = formats.parse_envelope(envelope_bytes)
    except ValueError as exc:
        return str(exc)
    if envelope.payload_type != formats.IN_TOTO:
        return f"payload type {envelope.payload_type!r} is not {formats.IN_TOTO}"
    signed = formats.pae(envelope.payload_type, envelope.payload)
    if not any(verify_bytes(key, signature, signed) for signature in envelope.signatures):
        return (f"not signed by {key_name} (another key signed it, or it was changed after "
                "signing)")
    try:
        statement = json.loads(envelope.payload)
        subjects = statement["subject"]
        digests = {f"{algorithm}:{value}" for subject in subjects
                   for algorithm, value in subject["digest"].items()}
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return "its payload is not an in-toto statement"
    if statement.get("predicateType") != PREDICATE_TYPE:
        return f"predicate type {statement.get('predicateType')!r} is not {PREDICATE_TYPE}"
    if image.digest not in digests:
        return f"it is about {', '.join(sorted(digests))}, not this image's {image.digest}"
    return dict(statement)


def describe_key(key: PrivateKey | PublicKey, path: str) -> str:
    """Return how messages name a key: its file and fingerprint."""
    return f"{path} (key {key_id(key)})"


def require_pinned(image: Reference, source: str) -> None:
    """Raise ConfigError unless ``image`` is pinned to a digest (what sign needs)."""
    if not image.digest:
        raise ConfigError(f"{source}: {image} names no digest; sign an image by digest "
                          f"(IMAGE@sha256:…), as cosign asks, so that the signature covers the "
                          f"image that was built")
