"""``shipml sign`` and ``shipml verify`` end to end against real registries, in-process."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from shipml.cli import main
from shipml.oci import Reference, RegistryClient, sha256_digest
from shipml.oci.media import OCI_CONFIG, OCI_MANIFEST
from shipml.results import Handoff, StageResult
from shipml.sign import formats
from shipml.sign.attestation import PREDICATE_TYPE, file_sha256
from shipml.sign.core import attest_image, attestation_tag, sign_image, signature_tag
from shipml.sign.keys import load_private_key, sign_bytes
from tests._services import free_port
from tests.oci._registry import Registry, push_test_image
from tests.sign.conftest import KeyPair, gate_result, pushed

pytestmark = pytest.mark.registry


def _sign(image: Reference | str, keys: KeyPair, monkeypatch: pytest.MonkeyPatch,
          *extra: str) -> int:
    monkeypatch.setenv("COSIGN_PASSWORD", keys.password)
    return main(["sign", "--key", str(keys.private), *extra, str(image)])


def _verify(image: Reference | str, public: Path, *extra: str) -> int:
    return main(["verify", "--key", str(public), *extra, str(image)])


def _manifest(registry: Registry, repository: str, tag: str) -> dict[str, Any]:
    client = RegistryClient(registry.address)
    return client.get_manifest(Reference(registry.address, repository, tag=tag)).document()


def _blob(registry: Registry, repository: str, digest: str) -> bytes:
    return RegistryClient(registry.address).get_blob(repository, digest)


# --- what sign writes ---------------------------------------------------------------------------


def test_sign_writes_cosigns_signature_and_attestation(
        registry: Registry, key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    image = pushed(registry)
    pinned = image.with_digest(image.digest)
    assert _sign(pinned, key_pair, monkeypatch) == 0
    out = capsys.readouterr().out
    assert f"shipml sign: PASS: signed {pinned}; gates attested (pass)" in out

    signature = _manifest(registry, image.repository, signature_tag(image.digest))
    assert signature["mediaType"] == OCI_MANIFEST and signature["config"]["mediaType"] == OCI_CONFIG
    (layer,) = signature["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert list(layer["annotations"]) == ["dev.cosignproject.cosign/signature"]
    payload = _blob(registry, image.repository, layer["digest"])
    assert payload == formats.simple_signing_payload(f"{registry.address}/{image.repository}",
                                                     image.digest)
    config = json.loads(_blob(registry, image.repository, signature["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]

    attestation = _manifest(registry, image.repository, attestation_tag(image.digest))
    (att_layer,) = attestation["layers"]
    assert att_layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    assert att_layer["annotations"]["predicateType"] == PREDICATE_TYPE
    envelope = json.loads(_blob(registry, image.repository, att_layer["digest"]))
    assert list(envelope) == ["payloadType", "payload", "signatures"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v0.1"
    assert statement["subject"] == [{"name": f"{registry.address}/{image.repository}",
                                     "digest": {"sha256": image.digest.split(":")[1]}}]
    predicate = statement["predicate"]
    assert predicate["verdict"] == "pass"
    assert predicate["model"] == {"path": "model.onnx",
                                  "sha256": file_sha256(workspace / "model.onnx")}
    assert [(gate["stage"], gate["status"]) for gate in predicate["gates"]] == \
        [("validate", "pass"), ("latency", "pass")]
    assert predicate["gates"][0]["checks"][0] == {"name": "validate check holds",
                                                  "status": "pass", "observed": 1.0,
                                                  "threshold": 0.5}

    result = StageResult.read(workspace / ".shipml" / "results" / "sign.json")
    assert result.status == "pass" and result.metrics["digest"] == image.digest
    assert result.handed("signature") == Handoff(
        kind="signature", ref=str(image.with_tag(signature_tag(image.digest))),
        digest=sha256_digest(json.dumps(signature, separators=(",", ":")).encode()))


def test_sign_then_verify_by_tag_and_by_digest_with_the_gates(
        registry: Registry, key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    image = pushed(registry)
    assert _sign(image.with_digest(image.digest), key_pair, monkeypatch) == 0
    capsys.readouterr()
    assert _verify(image.with_tag("v1"), key_pair.public, "--require-gates") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"shipml verify: PASS: {image.with_digest(image.digest)}\n")
    assert "PASS  gate latency passed" in out
    assert _verify(image.with_digest(image.digest), key_pair.public,
                   "--require-gates", "--required-gates", "validate,latency") == 0


def test_sign_takes_the_image_build_handed_on(
        registry: Registry, key_pair: KeyPair, workspace: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    image = pushed(registry)
    # what build hands on for an image it pushed: REPOSITORY@<manifest digest>
    StageResult(stage="build", status="pass", summary="built", started_at="", duration_s=1.0,
                handoff=(Handoff(kind="image", ref=str(image.with_digest(image.digest)),
                                 digest=image.digest),)).write(workspace / ".shipml")
    monkeypatch.setenv("COSIGN_PASSWORD", key_pair.password)
    assert main(["sign", "--key", str(key_pair.private)]) == 0
    assert _verify(image.with_tag("v1"), key_pair.public) == 0


def test_sign_with_require_gates_refuses_a_failed_gate_and_writes_nothing(
        registry: Registry, key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    gate_result("latency", "fail", failed="p95 latency at batch 1 is below 20 ms").write(
        workspace / ".shipml")
    image = pushed(registry)
    assert _sign(image.with_digest(image.digest), key_pair, monkeypatch, "--require-gates") == 1
    out = capsys.readouterr().out
    assert ("shipml sign: FAIL: not signed: the attestation says gate latency failed: p95 latency "
            "at batch 1 is below 20 ms") in out
    assert signature_tag(image.digest) not in RegistryClient(registry.address).tags(
        image.repository)


# --- tampering: verify fails and says which -----------------------------------------------------


def _last_failure(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out.splitlines()[0]


def test_another_image_under_the_same_tag_fails_verify(
        registry: Registry, key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    image = pushed(registry)
    assert _sign(image.with_digest(image.digest), key_pair, monkeypatch) == 0
    other = pushed(registry, b"a different model", repository=image.repository)
    capsys.readouterr()
    assert _verify(image.with_tag("v1"), key_pair.public) == 1
    assert _last_failure(capsys) == (
        f"shipml verify: FAIL: {other.with_digest(other.digest)}: no signature for "
        f"{other.with_digest(other.digest)} (tag v1 points at it): the registry has no "
        f"{signature_tag(other.digest)} tag")


def test_a_modified_signature_fails_verify(
        registry: Registry, key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    image = pushed(registry)
    assert _sign(image.with_digest(image.digest), key_pair, monkeypatch) == 0
    client = RegistryClient(registry.address)
    manifest = _manifest(registry, image.repository, signature_tag(image.digest))
    # A well-formed signature by the same key, over other bytes: only the check can tell.
    forged = sign_bytes(load_private_key(key_pair.private, key_pair.password), b"other bytes")
    manifest["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"] = \
        base64.b64encode(forged).decode()
    client.put_manifest(image.repository, signature_tag(image.digest),
                        json.dumps(manifest).encode(), OCI_MANIFEST)
    capsys.readouterr()
    assert _verify(image.with_digest(image.digest), key_pair.public) == 1
    line = _last_failure(capsys)
    assert "signature 1 does not verify with" in line and "was changed" in line


def test_a_wrong_public_key_fails_verify(
        registry: Registry, key_pair: KeyPair, other_key_pair: KeyPair, workspace: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    image = pushed(registry)
    assert _sign(image.with_digest(image.digest), key_pair, monkeypatch) == 0
    capsys.readouterr()
    assert _verify(image.with_digest(image.digest), other_key_pair.public) == 1
    assert f"signature 1 does not verify with {other_key_pair.public} (key " in \
        _last_failure(capsys)


def test_a_missing_signature_fails_verify(
        registry: Registry, key_pair: KeyPair, workspace: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    image = pushed(registry)
    assert _verify(image.with_digest(image.digest), key_pair.public) == 1
    assert _last_failure(capsys).endswith(
        f"no signature for {image.with_digest(image.digest)}: the registry has no "
        f"{signature_tag(image.digest)} tag")


def test_a_signature_copied_from_another_image_fails_verify(
        registry: Registry, key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    signed = pushed(registry)
    unsigned = pushed(registry, b"unsigned model", repository=signed.repository, tag="v2")
    assert _sign(signed.with_digest(signed.digest), key_pair, monkeypatch) == 0
    client = RegistryClient(registry.address)
    copied = client.get_manifest(signed.with_tag(signature_tag(signed.digest)))
    client.put_manifest(signed.repository, signature_tag(unsigned.digest), copied.data,
                        OCI_MANIFEST)
    capsys.readouterr()
    assert _verify(unsigned.with_tag("v2"), key_pair.public) == 1
    assert f"signature 1 is valid but covers {signed.digest}, not this image's " \
           f"{unsigned.digest}" in _last_failure(capsys)


def test_an_attestation_saying_a_gate_failed_fails_verify_with_require_gates(
        registry: Registry, key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    gate_result("latency", "fail", failed="p95 latency at batch 1 is below 20 ms").write(
        workspace / ".shipml")
    image = pushed(registry)
    assert _sign(image.with_digest(image.digest), key_pair, monkeypatch) == 0
    assert "gates attested (fail)" in capsys.readouterr().out
    assert _verify(image.with_digest(image.digest), key_pair.public) == 0
    capsys.readouterr()
    assert _verify(image.with_digest(image.digest), key_pair.public, "--require-gates") == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith(
        ": the attestation says gate latency failed: p95 latency at batch 1 is below 20 ms")
    assert "PASS  gate validate passed" in out and "FAIL  gate latency passed" in out


def test_a_required_gate_that_was_not_attested_fails_verify(
        registry: Registry, key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    image = pushed(registry)
    assert _sign(image.with_digest(image.digest), key_pair, monkeypatch) == 0
    capsys.readouterr()
    assert _verify(image.with_digest(image.digest), key_pair.public, "--require-gates",
                   "--required-gates", "validate,optimize") == 1
    assert _last_failure(capsys).endswith(": the attestation does not record gate optimize")


def test_an_attestation_signed_by_another_key_fails_verify(
        registry: Registry, key_pair: KeyPair, other_key_pair: KeyPair, workspace: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    image = pushed(registry)
    assert _sign(image.with_digest(image.digest), key_pair, monkeypatch, "--no-attest") == 0
    intruder = load_private_key(other_key_pair.private, other_key_pair.password)
    attest_image(RegistryClient(registry.address), image.with_digest(image.digest), intruder,
                 {"verdict": "pass", "gates": [{"stage": "validate", "status": "pass"}]})
    capsys.readouterr()
    assert _verify(image.with_digest(image.digest), key_pair.public, "--require-gates") == 1
    assert _last_failure(capsys).endswith(
        ": attestation 1: not signed by "
        f"{key_pair.public} (key {_key_id(key_pair)}) (another key signed it, or it was changed "
        "after signing)")


def _key_id(keys: KeyPair) -> str:
    from shipml.sign.keys import key_id, load_public_key

    return key_id(load_public_key(keys.public))


def test_verify_checks_the_attested_model_when_given_one(
        registry: Registry, key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    image = pushed(registry)
    assert _sign(image.with_digest(image.digest), key_pair, monkeypatch) == 0
    (workspace / "retrained.onnx").write_bytes(b"another model")
    capsys.readouterr()
    assert _verify(image.with_digest(image.digest), key_pair.public, "--require-gates",
                   "--model", "retrained.onnx") == 1
    assert "the attested model's sha256 is " + file_sha256(workspace / "model.onnx") in \
        _last_failure(capsys)


# --- auth: basic and bearer ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_sign_and_verify_against_registries_with_auth(
        kind: str, basic_registry: Registry, token_registry: Registry, docker_login: Path,
        key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = basic_registry if kind == "basic" else token_registry
    image = pushed(target)
    assert _sign(image.with_digest(image.digest), key_pair, monkeypatch) == 0
    assert _verify(image.with_tag("v1"), key_pair.public, "--require-gates") == 0


# --- bad input ----------------------------------------------------------------------------------


def test_an_unreachable_registry_is_exit_3_after_retries(
        key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (workspace / "shipml.yaml").write_text(
        "model:\n  path: model.onnx\nsign:\n  registry:\n    retries: 1\n    backoff_s: 0\n")
    address = f"127.0.0.1:{free_port()}"
    image = f"{address}/team/model@sha256:{'1' * 64}"
    assert _sign(image, key_pair, monkeypatch) == 3
    assert capsys.readouterr().err.splitlines() == [
        f"registry {address}: connection refused (attempt 1 of 2); retrying in 0.0 s",
        f"shipml sign: registry {address} unreachable after 2 attempts (connection refused); "
        "check that it is up and that the address is right"]
    result = StageResult.read(workspace / ".shipml" / "results" / "sign.json")
    assert result.status == "error" and result.error is not None and result.error.exit_code == 3
    assert main(["verify", "--key", str(key_pair.public), image]) == 3


@pytest.mark.parametrize(("argv", "message"), [
    (["--key", "missing.key", "127.0.0.1:5000/team/model@sha256:" + "1" * 64],
     "key file {cwd}/missing.key not found; create a pair with `shipml keygen`"),
    (["--key", "k", "127.0.0.1:5000/team/model:v1"],
     "127.0.0.1:5000/team/model:v1 names no digest; sign an image by digest"),
    (["127.0.0.1:5000/team/model@sha256:" + "1" * 64], "shipml sign needs a key: --key "),
    (["--key", "k"], "no image to sign: give IMAGE"),
    (["--key", "k", "--image", "a/b@sha256:" + "1" * 64, "c/d@sha256:" + "1" * 64],
     "the positional IMAGE c/d@sha256:"),
    (["--keyless", "127.0.0.1:5000/team/model@sha256:" + "1" * 64],
     "keyless signing needs the cosign CLI on PATH"),
])
def test_bad_sign_input_is_exit_2_with_the_fix(
        argv: list[str], message: str, workspace: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sign", *argv]) == 2
    err = capsys.readouterr().err
    assert message.format(cwd=workspace) in err, err


def test_signing_an_image_the_registry_lacks_is_exit_2(
        registry: Registry, key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    image = f"{registry.address}/team/absent@sha256:{'2' * 64}"
    assert _sign(image, key_pair, monkeypatch) == 2
    assert f"{image}: no such manifest in the registry" in capsys.readouterr().err


def test_verify_without_a_public_key_or_with_a_private_one_is_exit_2(
        key_pair: KeyPair, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "127.0.0.1:5000/team/model:v1"]) == 2
    assert "shipml verify needs the public key: --key cosign.pub" in capsys.readouterr().err
    assert main(["verify", "--key", str(key_pair.private), "127.0.0.1:5000/team/model:v1"]) == 2
    assert "that is a private key: verify with the .pub file" in capsys.readouterr().err


def test_the_signature_images_of_two_signers_accumulate(
        registry: Registry, key_pair: KeyPair, other_key_pair: KeyPair, workspace: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    image = pushed(registry)
    assert _sign(image.with_digest(image.digest), key_pair, monkeypatch, "--no-attest") == 0
    assert _sign(image.with_digest(image.digest), other_key_pair, monkeypatch, "--no-attest") == 0
    layers = _manifest(registry, image.repository, signature_tag(image.digest))["layers"]
    assert len(layers) == 2
    assert _verify(image.with_digest(image.digest), key_pair.public) == 0
    assert _verify(image.with_digest(image.digest), other_key_pair.public) == 0


def test_a_fresh_image_is_pushed_with_the_test_helper(registry: Registry) -> None:
    client = RegistryClient(registry.address)
    digest = push_test_image(client, "team/helper", "v1")
    assert client.resolve(Reference(registry.address, "team/helper", tag="v1")) == digest


def test_a_key_from_an_environment_variable_signs(
        registry: Registry, key_pair: KeyPair, workspace: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    image = pushed(registry)
    monkeypatch.setenv("RELEASE_SIGNING_KEY", key_pair.private.read_text())
    monkeypatch.setenv("COSIGN_PASSWORD", key_pair.password)
    assert main(["sign", "--key", "env://RELEASE_SIGNING_KEY",
                 str(image.with_digest(image.digest))]) == 0
    assert _verify(image.with_digest(image.digest), key_pair.public) == 0
    assert main(["sign", "--key", "env://UNSET_KEY", str(image.with_digest(image.digest))]) == 2
    assert "env://UNSET_KEY: the environment variable UNSET_KEY is not set" in \
        capsys.readouterr().err


# --- concurrent signers: read-modify-write of the .sig and .att tags ----------------------------

#: rounds of the race: each round, SIGNERS threads sign and attest one fresh image at once
RACE_ROUNDS = 12
RACE_SIGNERS = 4


def _race_round(target: Registry, keys: list[KeyPair],
                model: Path) -> tuple[Reference, list[str]]:
    """Sign and attest one fresh image (the gates passed for ``model``) from RACE_SIGNERS threads
    released together; return the image and what each thread raised (empty when none did)."""
    import threading

    image = pushed(target)
    pinned = image.with_digest(image.digest)
    loaded = [load_private_key(keys[number % len(keys)].private,
                               keys[number % len(keys)].password)
              for number in range(RACE_SIGNERS)]
    start = threading.Barrier(RACE_SIGNERS)
    failures: list[str] = []

    def signer(number: int) -> None:
        client = RegistryClient(target.address)
        try:
            start.wait()
            sign_image(client, pinned, loaded[number], {"signer": str(number)})
            attest_image(client, pinned, loaded[number],
                         {"verdict": "pass", "gates": [{"stage": "validate", "status": "pass"}],
                          "model": {"sha256": file_sha256(model)}, "signer": number})
        except Exception as exc:  # reported below, with the round
            failures.append(f"signer {number}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=signer, args=(number,)) for number in range(RACE_SIGNERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return pinned, failures


def _signers_found(target: Registry, image: Reference) -> tuple[set[str], int]:
    """Return the ``signer`` annotations of the signatures under the .sig tag, and how many
    attestations the .att tag holds."""
    client = RegistryClient(target.address)
    signatures = client.get_manifest(image.with_tag(signature_tag(image.digest))).layers()
    attestations = client.get_manifest(image.with_tag(attestation_tag(image.digest))).layers()
    found = set()
    for layer in signatures:
        claims = formats.parse_simple_signing(client.get_blob(image.repository, layer.digest))
        found.add(str((claims.optional or {}).get("signer")))
    return found, len(attestations)


def test_concurrent_signers_of_one_digest_all_keep_their_signature_and_attestation(
        registry: Registry, key_pair: KeyPair, other_key_pair: KeyPair, workspace: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    lost: list[str] = []
    for round_number in range(RACE_ROUNDS):
        image, failures = _race_round(registry, [key_pair, other_key_pair],
                                      workspace / "model.onnx")
        assert failures == [], failures
        signers, attestations = _signers_found(registry, image)
        verified = [_verify(image, keys.public, "--require-gates")
                    for keys in (key_pair, other_key_pair)]
        capsys.readouterr()
        if signers != {str(number) for number in range(RACE_SIGNERS)} \
                or attestations != RACE_SIGNERS or verified != [0, 0]:
            lost.append(f"round {round_number}: signatures of {sorted(signers)}, "
                        f"{attestations} attestations, verify exit codes {verified}")
    assert lost == [], f"{len(lost)} of {RACE_ROUNDS} races lost a signature: {lost}"


# --- hostile key files: each message names the file and what would be valid --------------------

#: the advice every unreadable public key gets: the public-key format, never a private one
PUBLIC_KEY_ADVICE = (
    "give the PKIX 'PUBLIC KEY' PEM (-----BEGIN PUBLIC KEY-----) that `cosign generate-key-pair` "
    "and `shipml keygen` write to cosign.pub (`cosign public-key --key cosign.key` prints it), of "
    "an ECDSA P-256, P-384 or P-521, RSA or Ed25519 key")
PRIVATE_KEY_ADVICE = ("use cosign.key from `shipml keygen`/`cosign generate-key-pair`, or a "
                      "PKCS#8 'PRIVATE KEY' PEM")
#: text that stands for key material in the hostile files: it must never reach a message
KEY_MATERIAL = "c2VjcmV0LWtleS1tYXRlcmlhbA"


def _hostile_key(folder: Path, kind: str) -> Path:
    """Write one hostile key file of ``kind`` into ``folder``; return its path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    pkcs8, spki = serialization.PrivateFormat.PKCS8, serialization.PublicFormat.SubjectPublicKeyInfo
    pem, plain = serialization.Encoding.PEM, serialization.NoEncryption()
    path = folder / f"{kind}.pem"
    if kind == "garbage":
        path.write_text(f"ssh-ed25519 {KEY_MATERIAL} someone@laptop\n")
    elif kind == "empty":
        path.write_text("\n")
    elif kind == "damaged-public":
        path.write_text(f"-----BEGIN PUBLIC KEY-----\n{KEY_MATERIAL}AA==\n-----END PUBLIC KEY-----\n")
    elif kind == "pkcs1-public":
        key = rsa.generate_private_key(65537, 2048)
        path.write_bytes(key.public_key().public_bytes(pem, serialization.PublicFormat.PKCS1))
    elif kind == "certificate":
        path.write_text(f"-----BEGIN CERTIFICATE-----\n{KEY_MATERIAL}AA==\n"
                        "-----END CERTIFICATE-----\n")
    elif kind in ("secp256k1-public", "secp256k1-private", "p256-public"):
        curve = ec.SECP256R1() if kind == "p256-public" else ec.SECP256K1()
        secret = ec.generate_private_key(curve)
        path.write_bytes(secret.private_bytes(pem, pkcs8, plain) if kind.endswith("private")
                         else secret.public_key().public_bytes(pem, spki))
    return path


@pytest.mark.parametrize(("kind", "found", "hint"), [
    ("garbage", "no PEM block", ""),
    ("empty", "an empty file", ""),
    ("damaged-public", "a 'PUBLIC KEY' block that holds no key it can read", ""),
    ("pkcs1-public", "a 'RSA PUBLIC KEY' PEM block",
     "; convert this PKCS#1 key: openssl rsa -RSAPublicKey_in -in KEY -pubout"),
    ("certificate", "a 'CERTIFICATE' PEM block",
     "; take its key: openssl x509 -pubkey -noout -in CERT > cosign.pub"),
])
def test_a_public_key_verify_cannot_read_names_the_file_and_the_public_key_formats(
        kind: str, found: str, hint: str, workspace: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = _hostile_key(workspace, kind)
    assert main(["verify", "--key", str(path), "127.0.0.1:5000/team/model:v1"]) == 2
    err = capsys.readouterr().err
    assert err == (f"shipml verify: {path}: not a public key shipml can read (found {found}); "
                   f"{PUBLIC_KEY_ADVICE}{hint}\n")
    assert "PRIVATE" not in err and KEY_MATERIAL not in err


@pytest.mark.parametrize(("command", "kind"), [("verify", "secp256k1-public"),
                                                ("sign", "secp256k1-private")])
def test_a_key_on_a_curve_cosign_does_not_use_is_refused(
        command: str, kind: str, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = _hostile_key(workspace, kind)
    assert main([command, "--key", str(path), f"127.0.0.1:5000/team/model@sha256:{'1' * 64}"]) == 2
    assert capsys.readouterr().err == (
        f"shipml {command}: {path}: an ECDSA key on curve secp256k1, which cosign does not sign "
        "or verify with; use P-256 (what `shipml keygen` and `cosign generate-key-pair` write), "
        "P-384 or P-521\n")


@pytest.mark.parametrize(("kind", "found", "hint"), [
    ("garbage", "no PEM block", ""),
    ("empty", "an empty file", ""),
    ("p256-public", "a 'PUBLIC KEY' PEM block",
     " (that is a public key: sign with the private key, cosign.key)"),
])
def test_a_private_key_sign_cannot_read_names_the_file_and_the_private_key_formats(
        kind: str, found: str, hint: str, workspace: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = _hostile_key(workspace, kind)
    assert main(["sign", "--key", str(path), f"127.0.0.1:5000/team/model@sha256:{'1' * 64}"]) == 2
    err = capsys.readouterr().err
    assert err == (f"shipml sign: {path}: not a private key shipml can read (found {found}); "
                   f"{PRIVATE_KEY_ADVICE}{hint}\n")
    assert KEY_MATERIAL not in err


def test_a_wrong_password_is_exit_2_and_never_printed_or_written(
        registry: Registry, key_pair: KeyPair, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    image = pushed(registry)
    password = "wrong-password-7f3a9c"
    monkeypatch.setenv("COSIGN_PASSWORD", password)
    assert main(["sign", "--debug", "--key", str(key_pair.private),
                 str(image.with_digest(image.digest))]) == 2
    captured = capsys.readouterr()
    # --debug shows the traceback too: the password must not be in it either
    assert captured.err.splitlines()[-1].endswith(
        f"{key_pair.private}: could not decrypt the private key: the password "
        "(COSIGN_PASSWORD) is wrong, or the file is damaged")
    written = (workspace / ".shipml" / "results" / "sign.json").read_text()
    key_text = key_pair.private.read_text().splitlines()[1]
    for shown in (captured.out, captured.err, caplog.text, written):
        assert password not in shown and key_text not in shown
