"""With the cosign CLI on PATH, shipml hands it the work: a fake ``cosign`` records its argv."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from shipml.cli import main
from shipml.sign.attestation import PREDICATE_TYPE, file_sha256
from shipml.sign.formats import IN_TOTO, dsse_envelope, in_toto_statement

IMAGE = "127.0.0.1:5000/team/model@sha256:" + "3" * 64
FAKE = """#!/usr/bin/env python3
import json, os, sys
log = os.environ["FAKE_COSIGN_LOG"]
record = {"argv": sys.argv[1:], "password_seen": "COSIGN_PASSWORD" in os.environ}
if "--predicate" in sys.argv:
    record["predicate"] = json.load(open(sys.argv[sys.argv.index("--predicate") + 1]))
with open(log, "a") as handle:
    handle.write(json.dumps(record) + "\\n")
if sys.argv[1] == "verify-attestation" and os.environ.get("FAKE_COSIGN_ENVELOPE"):
    print(os.environ["FAKE_COSIGN_ENVELOPE"])
sys.stderr.write(os.environ.get("FAKE_COSIGN_STDERR", ""))
sys.exit(int(os.environ.get("FAKE_COSIGN_RC", "0")))
"""


@pytest.fixture()
def cosign_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workspace: Path) -> Path:
    folder = tmp_path / "fake-bin"
    folder.mkdir()
    fake = folder / "cosign"
    fake.write_text(FAKE)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SHIPML_COSIGN", "auto")
    monkeypatch.setenv("COSIGN_PASSWORD", "never-in-argv")
    log = tmp_path / "cosign.log"
    monkeypatch.setenv("FAKE_COSIGN_LOG", str(log))
    return log


def _calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_sign_and_attest_delegate_to_cosign(cosign_log: Path, workspace: Path) -> None:
    assert main(["sign", "--key", "cosign.key", IMAGE]) == 0
    sign, attest = _calls(cosign_log)
    key = str(workspace / "cosign.key")
    assert sign["argv"] == ["sign", "--yes", "--key", key, "--tlog-upload=false",
                            "--allow-http-registry", IMAGE]
    assert attest["argv"][:5] == ["attest", "--yes", "--type", PREDICATE_TYPE, "--predicate"]
    assert attest["argv"][6:] == ["--key", key, "--tlog-upload=false", "--allow-http-registry",
                                  IMAGE]
    assert attest["predicate"]["verdict"] == "pass"  # type: ignore[index]
    assert sign["password_seen"] and not any("never-in-argv" in a for a in sign["argv"])  # type: ignore[attr-defined]
    result = json.loads((workspace / ".shipml" / "results" / "sign.json").read_text())
    assert result["metrics"]["signer"] == "cosign"
    assert result["handoff"] == [{"kind": "signature",
                                  "ref": IMAGE.split("@")[0] + ":sha256-" + "3" * 64 + ".sig"}]


def test_keyless_signing_leaves_the_identity_to_cosign(cosign_log: Path) -> None:
    assert main(["sign", "--keyless", "--no-attest", "--tlog", IMAGE]) == 0
    (sign,) = _calls(cosign_log)
    assert sign["argv"] == ["sign", "--yes", "--allow-http-registry", IMAGE]


def test_verify_delegates_and_judges_the_attested_gates(
        cosign_log: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    model = {"path": "model.onnx", "sha256": file_sha256(workspace / "model.onnx")}
    predicate = {"verdict": "fail", "model": model, "gates": [
        {"stage": "validate", "status": "pass", "checks": []},
        {"stage": "latency", "status": "fail",
         "checks": [{"name": "p95 latency at batch 1 is below 20 ms", "status": "fail"}]}]}
    statement = in_toto_statement("127.0.0.1:5000/team/model", IMAGE.split("@")[1],
                                  PREDICATE_TYPE, predicate)
    monkeypatch.setenv("FAKE_COSIGN_ENVELOPE",
                       dsse_envelope(IN_TOTO, statement, b"not checked here").decode())
    assert main(["verify", "--key", "cosign.pub", IMAGE]) == 0
    assert main(["verify", "--key", "cosign.pub", "--require-gates", IMAGE]) == 1
    verify, _, attestation = _calls(cosign_log)
    assert verify["argv"] == ["verify", "--key", str(Path.cwd() / "cosign.pub"),
                              "--insecure-ignore-tlog=true", "--allow-http-registry", IMAGE]
    assert attestation["argv"][:4] == ["verify-attestation", "--key",
                                       str(Path.cwd() / "cosign.pub"), "--type"]
    out = capsys.readouterr().out
    assert out.splitlines()[2].endswith(
        "the attestation says gate latency failed: p95 latency at batch 1 is below 20 ms")
    assert "PASS  the attestation is for this model" in out


def test_a_failed_cosign_verify_is_exit_1_with_its_reason(
        cosign_log: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FAKE_COSIGN_RC", "1")
    monkeypatch.setenv("FAKE_COSIGN_STDERR", "Error: no matching signatures: invalid signature\n")
    assert main(["verify", "--key", "cosign.pub", IMAGE]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        f"shipml verify: FAIL: {IMAGE}: cosign verify: Error: no matching signatures: "
        "invalid signature")


def test_a_cosign_key_error_is_exit_2(cosign_log: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FAKE_COSIGN_RC", "1")
    monkeypatch.setenv("FAKE_COSIGN_STDERR", "Error: decrypt: encrypted: decryption failed\n")
    assert main(["sign", "--key", "cosign.key", IMAGE]) == 2
    err = capsys.readouterr().err
    assert "cosign sign failed (exit 1): Error: decrypt: encrypted: decryption failed" in err
    assert "never-in-argv" not in err


def test_keygen_delegates_to_cosign(cosign_log: Path) -> None:
    assert main(["keygen", "--output-key-prefix", "release"]) == 0
    assert _calls(cosign_log)[0]["argv"] == ["generate-key-pair", "--output-key-prefix",
                                             "release"]


def test_cosign_always_without_cosign_is_exit_2(workspace: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    os.environ["PATH"] = os.environ["PATH"]  # the autouse fixture leaves no fake cosign here
    assert main(["sign", "--cosign", "always", "--key", "k", IMAGE]) == 2
    assert "sign.cosign is 'always' but cosign is not on PATH" in capsys.readouterr().err


def test_the_envelope_fixture_decodes() -> None:
    envelope = json.loads(dsse_envelope(IN_TOTO, b"{}", b"sig"))
    assert base64.b64decode(envelope["payload"]) == b"{}"
