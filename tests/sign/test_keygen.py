"""``shipml keygen`` writes a pair cosign can use: its encrypted format, its parameters."""

from __future__ import annotations

import base64
import json
import re
import stat
from pathlib import Path

import pytest

from shipml.cli import main
from shipml.sign.keys import load_private_key, load_public_key, public_key_pem, sign_bytes, verify_bytes


def test_keygen_writes_cosigns_encrypted_key_and_public_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSIGN_PASSWORD", "pw-for-keygen")
    assert main(["keygen"]) == 0
    assert capsys.readouterr().out == ("Private key written to cosign.key\n"
                                       "Public key written to cosign.pub\n")
    private, public = tmp_path / "cosign.key", tmp_path / "cosign.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    text = private.read_text()
    match = re.fullmatch(r"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n(.*)\n"
                         r"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n", text, re.DOTALL)
    assert match is not None and all(len(line) <= 64 for line in match.group(1).splitlines())
    document = json.loads(base64.b64decode("".join(match.group(1).split())))
    assert list(document) == ["kdf", "cipher", "ciphertext"]
    assert document["kdf"]["name"] == "scrypt"
    assert document["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert len(base64.b64decode(document["kdf"]["salt"])) == 32
    assert document["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(document["cipher"]["nonce"])) == 24
    key = load_private_key(private, "pw-for-keygen")
    assert public_key_pem(key) == public.read_bytes()
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----\n")
    assert verify_bytes(load_public_key(public), sign_bytes(key, b"x"), b"x")


def test_keygen_takes_a_prefix_and_never_overwrites(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSIGN_PASSWORD", "")
    (tmp_path / "keys").mkdir()
    assert main(["keygen", "--output-key-prefix", "keys/release"]) == 0
    assert load_private_key(tmp_path / "keys" / "release.key", "") is not None
    capsys.readouterr()
    assert main(["keygen", "--output-key-prefix", "keys/release"]) == 2
    assert capsys.readouterr().err.startswith(
        "shipml keygen: keys/release.key already exists; shipml keygen does not overwrite keys")


def test_keygen_without_a_password_says_how_to_give_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["keygen"]) == 2
    assert capsys.readouterr().err == (
        "shipml keygen: cosign.key is encrypted and no password was given: set COSIGN_PASSWORD "
        "(in a workflow step, from a secret: env: COSIGN_PASSWORD: "
        "${{ secrets.COSIGN_PASSWORD }})\n")
    assert not (tmp_path / "cosign.key").exists()


def test_keygen_onto_a_folder_says_it_is_a_folder_and_what_to_give(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSIGN_PASSWORD", "pw-for-keygen")
    (tmp_path / "release.key").mkdir()
    assert main(["keygen", "--key", "release.key"]) == 2
    assert capsys.readouterr().err == (
        f"shipml keygen: {tmp_path / 'release.key'} is a folder; shipml keygen writes "
        "PREFIX.key and PREFIX.pub: give --output-key-prefix FOLDER/cosign (or sign.key: "
        "FOLDER/cosign.key)\n")
    assert list((tmp_path / "release.key").iterdir()) == []
