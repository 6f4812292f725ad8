"""cosign's own data (tests/sign/vectors, copied unedited from ../shared/cosign-vectors; its README
names the source of each file): shipml loads the keys cosign wrote, verifies the signatures cosign
made, and writes the same shapes."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from shipml.cli import main
from shipml.errors import ConfigError
from shipml.oci import sha256_digest
from shipml.oci.media import Descriptor
from shipml.sign import formats
from shipml.sign.keys import (
    load_private_key,
    load_public_key,
    public_key_pem,
    sign_bytes,
    verify_bytes,
)
from tests.sign.conftest import VECTORS

#: every key file of the vectors with its password (README.md)
KEYS = [
    ("cosign-repo/keys_test-pemsigstorekey.key", "hello"),
    ("cosign-repo/keys_test-pemcosignkey.key", "hello"),
    ("sigstore-rs/cosign_generated_encrypted_empty_private.key", ""),
    ("sigstore-rs/ecdsa_encrypted_private.key", "123"),
    ("sigstore-rs/ECDSA_P256_ASN1_ENCRYPTED_PRIVATE_PEM.key", "password"),
]
SEC1 = VECTORS / "cosign-repo" / "keys_test-pemcosigneckey.key"
FAKE_DIGEST = "sha256:" + "0" * 64
SIGNED_DIRS = ["dir-img-cosign-valid", "dir-img-cosign-valid-2", "dir-img-cosign-key-rekor-valid",
               "dir-img-cosign-valid-with-tag"]


@pytest.mark.parametrize(("name", "password"), KEYS)
def test_every_cosign_key_loads_with_its_password(name: str, password: str) -> None:
    key = load_private_key(VECTORS / name, password)
    derived = (VECTORS / name).with_suffix(".derived.pub").read_bytes()
    assert public_key_pem(key) == derived
    signature = sign_bytes(key, b"payload")
    assert verify_bytes(load_public_key((VECTORS / name).with_suffix(".derived.pub")), signature,
                        b"payload")


@pytest.mark.parametrize(("name", "password"), KEYS)
def test_a_wrong_password_is_refused(name: str, password: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_private_key(VECTORS / name, password + "-wrong")
    assert error.value.exit_code == 2
    assert error.value.message == (f"{VECTORS / name}: could not decrypt the private key: the "
                                   "password (COSIGN_PASSWORD) is wrong, or the file is damaged")


def test_the_sec1_key_is_refused_as_cosign_refuses_it() -> None:
    with pytest.raises(ConfigError) as error:
        load_private_key(SEC1, "hello")
    assert "SEC1 'EC PRIVATE KEY', not PKCS#8" in error.value.message


@pytest.mark.parametrize(("key", "password"), [(SEC1, "hello"), (VECTORS / KEYS[0][0], "nope")])
def test_sign_with_a_bad_key_or_password_is_exit_2_and_never_echoes_it(
        key: Path, password: str, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", password)
    code = main(["sign", "--key", str(key), f"127.0.0.1:9/team/model@{FAKE_DIGEST}"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith(f"shipml sign: {key}: ")
    assert password not in captured.out + captured.err
    result = json.loads((workspace / ".shipml" / "results" / "sign.json").read_text())
    assert result["status"] == "error" and result["error"]["exit_code"] == 2
    assert password not in json.dumps(result)


def test_busybox_signature_verifies_and_a_changed_payload_does_not() -> None:
    key = load_public_key(VECTORS / "sigstore-rs" / "busybox.pub")
    payload = (VECTORS / "sigstore-rs" / "busybox.payload.json").read_bytes()
    signature = base64.b64decode((VECTORS / "sigstore-rs" / "busybox.sig.b64").read_text())
    assert verify_bytes(key, signature, payload)
    assert not verify_bytes(key, signature, payload.replace(b"busybox", b"busyb0x"))
    claims = formats.parse_simple_signing(payload)
    assert claims.type == formats.SIGNATURE_TYPE
    assert payload == formats.simple_signing_payload(claims.docker_reference,
                                                     claims.manifest_digest)


def test_an_rsa_signature_in_cosign_format_verifies() -> None:
    key = load_public_key(VECTORS / "sigstore-rs" / "obs-rsa.pub")
    payload = (VECTORS / "sigstore-rs" / "obs-rsa.payload.json").read_bytes()
    signature = base64.b64decode((VECTORS / "sigstore-rs" / "obs-rsa.sig.b64").read_text())
    assert verify_bytes(key, signature, payload)


def _signature_layers(folder: Path) -> list[tuple[Descriptor, bytes, dict[str, Any]]]:
    """containers/image's wrapper: b'\\x00sigstore-json\\n' + JSON {mimeType, payload, annotations}."""
    layers = []
    for path in sorted(folder.glob("signature-*")):
        raw = path.read_bytes()
        assert raw.startswith(b"\x00sigstore-json\n")
        wrapped = json.loads(raw[len(b"\x00sigstore-json\n"):])
        payload = base64.b64decode(wrapped["payload"])
        descriptor = Descriptor.of(payload, wrapped["mimeType"], wrapped["annotations"])
        layers.append((descriptor, payload, wrapped))
    return layers


@pytest.mark.parametrize("folder", SIGNED_DIRS)
def test_cosign_made_image_signatures_verify_over_the_manifest_digest(folder: str) -> None:
    directory = VECTORS / "containers-image" / folder
    key_file = "cosign2.pub" if folder == "dir-img-cosign-key-rekor-valid" else "cosign.pub"
    key = load_public_key(VECTORS / "containers-image" / key_file)
    digest = sha256_digest((directory / "manifest.json").read_bytes())
    layers = _signature_layers(directory)
    assert layers
    for descriptor, payload, _ in layers:
        signature = formats.signature_of(descriptor)
        assert signature is not None and verify_bytes(key, signature, payload)
        claims = formats.parse_simple_signing(payload)
        assert claims.manifest_digest == digest
    other = load_public_key(VECTORS / "sigstore-rs" / "busybox.pub")
    assert not verify_bytes(other, formats.signature_of(layers[0][0]) or b"", layers[0][1])


def test_shipml_signs_the_same_shape_as_cosign() -> None:
    directory = VECTORS / "containers-image" / "dir-img-cosign-valid"
    (cosign_layer, cosign_payload, wrapped) = _signature_layers(directory)[0]
    claims = formats.parse_simple_signing(cosign_payload)
    # The same image, reference and no annotations give byte-identical payloads.
    ours = formats.simple_signing_payload(claims.docker_reference, claims.manifest_digest)
    assert ours == cosign_payload
    assert ours == (directory / "payload.json").read_bytes()
    key = load_private_key(VECTORS / KEYS[0][0], KEYS[0][1])
    layer = formats.signature_layer(ours, sign_bytes(key, ours))
    assert layer.media_type == wrapped["mimeType"] == formats.SIMPLE_SIGNING
    assert set(layer.annotations) == set(wrapped["annotations"]) == {formats.SIGNATURE_ANNOTATION}
    assert layer.digest == cosign_layer.digest == "sha256:" + hashlib.sha256(ours).hexdigest()
    # With annotations the layout stays cosign's: critical first, optional's keys sorted.
    annotated = json.loads(formats.simple_signing_payload("r/x", FAKE_DIGEST, {"b": "2", "a": "1"}),
                           object_pairs_hook=list)
    assert [key for key, _ in annotated] == ["critical", "optional"]
    assert [key for key, _ in dict(annotated)["critical"]] == ["identity", "image", "type"]
    assert dict(annotated)["optional"] == [("a", "1"), ("b", "2")]


def test_payloads_escape_as_go_does() -> None:
    payload = formats.simple_signing_payload("r/x", FAKE_DIGEST, {"note": "<a & b>"})
    assert b'"note":"\\u003ca \\u0026 b\\u003e"' in payload


def test_dsse_pae_is_the_specs_encoding() -> None:
    assert formats.pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
