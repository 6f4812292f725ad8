"""cosign's formats, as pure functions over bytes: no keys read, no registry touched.

- the simple-signing payload a key-based image signature covers
  (``critical.identity.docker-reference``, ``critical.image.docker-manifest-digest``,
  ``critical.type``, ``optional``), serialised as Go's ``encoding/json`` writes it;
- the signature image stored under ``sha256-<hex>.sig``: an OCI image manifest with one layer
  per signature (media type ``application/vnd.dev.cosign.simplesigning.v1+json``, the base64
  signature in the ``dev.cosignproject.cosign/signature`` annotation);
- DSSE envelopes (``application/vnd.dsse.envelope.v1+json``) signed over the PAE encoding, with
  in-toto statements, stored as layers of the image under ``sha256-<hex>.att``.

See cosign's ``specs/SIGNATURE_SPEC.md`` and ``specs/ATTESTATION_SPEC.md``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipml.oci.media import OCI_CONFIG, OCI_MANIFEST, Descriptor

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
SIGNATURE_TYPE = "cosign container image signature"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PREDICATE_TYPE_ANNOTATION = "predicateType"
STATEMENT_TYPE = "https://in-toto.io/Statement/v0.1"
#: cosign's sentinel time in the config of its signature images (Go's zero time)
_ZERO_TIME = "0001-01-01T00:00:00Z"


def go_json(document: Any) -> bytes:
    """Return ``document`` as Go's ``json.Marshal`` writes it: compact, map keys sorted, UTF-8
    kept, and ``<``, ``>``, ``&``, U+2028, U+2029 escaped. Dicts keep their order, as structs do;
    pass maps through :func:`_sorted` first."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text.encode()


def simple_signing_payload(docker_reference: str, manifest_digest: str,
                           optional: Mapping[str, Any] | None = None) -> bytes:
    """Return the exact payload bytes cosign signs for an image: ``optional`` null when there
    are no annotations, else an object with sorted keys."""
    document = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": _sorted(dict(optional)) if optional else None,
    }
    return go_json(document)


@dataclass(frozen=True)
class SimpleSigning:
    """What a simple-signing payload claims."""

    docker_reference: str
    manifest_digest: str
    type: str
    optional: Mapping[str, Any] | None


def parse_simple_signing(payload: bytes) -> SimpleSigning:
    """Return the claims of a simple-signing payload; raise ValueError when it is not one."""
    try:
        document = json.loads(payload)
        critical = document["critical"]
        claims = SimpleSigning(
            docker_reference=str(critical["identity"]["docker-reference"]),
            manifest_digest=str(critical["image"]["docker-manifest-digest"]),
            type=str(critical["type"]),
            optional=document.get("optional"),
        )
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a simple-signing payload ({type(exc).__name__})") from None
    return claims


def pae(payload_type: str, payload: bytes) -> bytes:
    """Return DSSE's pre-authentication encoding: what an envelope's signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def dsse_envelope(payload_type: str, payload: bytes, signature: bytes, keyid: str = "") -> bytes:
    """Return a DSSE envelope as cosign writes it (one signature)."""
    document = {"payloadType": payload_type, "payload": _b64(payload),
                "signatures": [{"keyid": keyid, "sig": _b64(signature)}]}
    return go_json(document)


@dataclass(frozen=True)
class Envelope:
    """A parsed DSSE envelope: its payload type, payload and signatures."""

    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]


def parse_envelope(data: bytes) -> Envelope:
    """Return the parsed envelope; raise ValueError when ``data`` is not a DSSE envelope."""
    try:
        document = json.loads(data)
        return Envelope(
            payload_type=str(document["payloadType"]),
            payload=base64.b64decode(document["payload"], validate=True),
            signatures=tuple(base64.b64decode(item["sig"], validate=True)
                             for item in document["signatures"]),
        )
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not a DSSE envelope ({type(exc).__name__})") from None


def in_toto_statement(subject_name: str, manifest_digest: str, predicate_type: str,
                      predicate: Mapping[str, Any]) -> bytes:
    """Return an in-toto statement about one image (subject: its repository and digest)."""
    algorithm, _, hex_digest = manifest_digest.partition(":")
    document = {
        "_type": STATEMENT_TYPE,
        "predicateType": predicate_type,
        "subject": [{"name": subject_name, "digest": {algorithm: hex_digest}}],
        "predicate": dict(predicate),
    }
    return go_json(document)


def signature_layer(payload: bytes, signature: bytes) -> Descriptor:
    """Return the layer descriptor of one image signature."""
    return Descriptor.of(payload, SIMPLE_SIGNING, {SIGNATURE_ANNOTATION: _b64(signature)})


def attestation_layer(envelope: bytes, predicate_type: str) -> Descriptor:
    """Return the layer descriptor of one attestation (cosign leaves the signature annotation
    empty: the signature is inside the envelope)."""
    return Descriptor.of(envelope, DSSE_ENVELOPE,
                         {SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: predicate_type})


def signature_image(layers: Sequence[Descriptor]) -> tuple[bytes, bytes]:
    """Return (config, manifest) of the image holding ``layers``: the OCI image cosign builds
    for ``.sig`` and ``.att`` tags (an empty image with one history entry per layer)."""
    config = go_json({
        "architecture": "",
        "created": _ZERO_TIME,
        "history": [{"created": _ZERO_TIME} for _ in layers],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        "config": {},
    })
    config_descriptor = Descriptor.of(config, OCI_CONFIG)
    manifest = go_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(config_descriptor),
        "layers": [_descriptor(layer) for layer in layers],
    })
    return config, manifest


def signature_of(layer: Descriptor) -> bytes | None:
    """Return the decoded signature in a layer's annotation, or None when it has none or it is
    not base64."""
    text = layer.annotations.get(SIGNATURE_ANNOTATION, "")
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return None


def _descriptor(descriptor: Descriptor) -> dict[str, Any]:
    # go-containerregistry's field order: mediaType, size, digest, annotations
    record: dict[str, Any] = {"mediaType": descriptor.media_type, "size": descriptor.size,
                              "digest": descriptor.digest}
    if descriptor.annotations:
        record["annotations"] = _sorted(dict(descriptor.annotations))
    return record


def _sorted(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {key: (_sorted(value) if isinstance(value, Mapping) else value)
            for key, value in sorted(mapping.items())}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
