"""Signing keys in cosign's formats.

A private key is either cosign's encrypted file (PEM ``ENCRYPTED SIGSTORE PRIVATE KEY``, or the
older label ``ENCRYPTED COSIGN PRIVATE KEY``: JSON holding the scrypt parameters and salt, the
nacl/secretbox nonce, and the sealed PKCS#8 DER) or an unencrypted PKCS#8 ``PRIVATE KEY`` PEM. The
password comes from ``COSIGN_PASSWORD`` (empty is a valid password, as for cosign), else a
prompt when a terminal is attached. It never appears in a message.

A public key is a PKIX ``PUBLIC KEY`` PEM (``cosign.pub``). Signatures are ECDSA with SHA-256 in
DER (P-256 is what cosign generates), RSA PKCS#1 v1.5 with SHA-256, or Ed25519.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from shipml.errors import ConfigError

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

PASSWORD_VARIABLE = "COSIGN_PASSWORD"
#: the label ``cosign generate-key-pair`` writes (since v2.0)
SIGSTORE_LABEL = "ENCRYPTED SIGSTORE PRIVATE KEY"
ENCRYPTED_LABELS = (SIGSTORE_LABEL, "ENCRYPTED COSIGN PRIVATE KEY")
#: cosign's scrypt parameters for new keys
SCRYPT_N, SCRYPT_R, SCRYPT_P = 65536, 8, 1
#: the largest work factor accepted from a key file (cosign's own files use 32768 or 65536)
MAX_SCRYPT_N = 2**20
MAX_KEY_FILE_BYTES = 64 * 1024

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)

NO_PASSWORD = ("{path} is encrypted and no password was given: set COSIGN_PASSWORD (in a "
               "workflow step, from a secret: env: COSIGN_PASSWORD: ${{{{ secrets.COSIGN_PASSWORD }}}})")
WRONG_PASSWORD = (f"{{path}}: could not decrypt the private key: the password ({PASSWORD_VARIABLE}) "
                  "is wrong, or the file is damaged")
NOT_PKCS8 = ("{path}: the decrypted key is an SEC1 'EC PRIVATE KEY', not PKCS#8, and cosign "
             "refuses it too; re-encode it: openssl pkcs8 -topk8 -nocrypt -in KEY -out key.pem, "
             "then `cosign import-key-pair --key key.pem`")
UNKNOWN_KEY_FILE = ("{path}: not a private key shipml can read (found {found}); use cosign.key from "
                    "`shipml keygen`/`cosign generate-key-pair`, or a PKCS#8 'PRIVATE KEY' PEM")
UNKNOWN_PUBLIC_KEY_FILE = (
    "{path}: not a public key shipml can read (found {found}); give the PKIX 'PUBLIC KEY' PEM "
    "(-----BEGIN PUBLIC KEY-----) that `cosign generate-key-pair` and `shipml keygen` write to "
    "cosign.pub (`cosign public-key --key cosign.key` prints it), of an ECDSA P-256, P-384 or "
    "P-521, RSA or Ed25519 key")
#: the hint after UNKNOWN_PUBLIC_KEY_FILE for PEM blocks that hold a public key in another form
PUBLIC_KEY_HINTS = {
    "RSA PUBLIC KEY": "; convert this PKCS#1 key: openssl rsa -RSAPublicKey_in -in KEY -pubout",
    "CERTIFICATE": "; take its key: openssl x509 -pubkey -noout -in CERT > cosign.pub",
    "EC PUBLIC KEY": "; convert it: openssl ec -pubin -in KEY -pubout",
}
PRIVATE_GIVEN_TO_VERIFY = " (that is a private key: verify with the .pub file)"
PUBLIC_GIVEN_TO_SIGN = " (that is a public key: sign with the private key, cosign.key)"
EMPTY_KEY_FILE = "an empty file"
#: the curves cosign signs and verifies with (sigstore's supported ECDSA curves)
SUPPORTED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
UNSUPPORTED_CURVE = ("{path}: an ECDSA key on curve {curve}, which cosign does not sign or "
                     "verify with; use P-256 (what `shipml keygen` and `cosign generate-key-pair` "
                     "write), P-384 or P-521")


def read_password(path: Path | str, *, confirm: bool = False,
                  environ: Mapping[str, str] | None = None) -> str:
    """Return the key password: ``COSIGN_PASSWORD`` when set (even empty), else a prompt on a
    terminal. Raises ConfigError when neither is available."""
    env = os.environ if environ is None else environ
    if PASSWORD_VARIABLE in env:
        return env[PASSWORD_VARIABLE]
    if sys.stdin.isatty():
        password = getpass.getpass(f"Enter password for private key {path}: ")
        if confirm and getpass.getpass("Enter password for private key again: ") != password:
            raise ConfigError("the two passwords differ")
        return password
    raise ConfigError(NO_PASSWORD.format(path=path))


def load_private_key(path: Path | str, password: str | None = None) -> PrivateKey:
    """Return the private key in ``path`` (cosign's encrypted format or PKCS#8 PEM), or in the
    environment variable an ``env://NAME`` reference names (as cosign reads it); the password
    is read with :func:`read_password` when the key is encrypted and none is given.

    Raises ConfigError when the file is missing, unreadable, encrypted with another password,
    or holds something other than a PKCS#8 EC, RSA or Ed25519 key.
    """
    label, body = _read_pem(path, UNKNOWN_KEY_FILE)
    if label in ENCRYPTED_LABELS:
        secret = read_password(path) if password is None else password
        der = decrypt_key_file(body, secret, path)
    elif label == "PRIVATE KEY":
        der = body
    elif label == "EC PRIVATE KEY":
        raise ConfigError(NOT_PKCS8.format(path=path))
    else:
        hint = PUBLIC_GIVEN_TO_SIGN if "PUBLIC KEY" in label else ""
        raise ConfigError(UNKNOWN_KEY_FILE.format(path=path, found=f"a {label!r} PEM block")
                          + hint)
    if not _is_pkcs8(der):
        raise ConfigError(NOT_PKCS8.format(path=path))
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(UNKNOWN_KEY_FILE.format(path=path, found="an unreadable PKCS#8 key")) from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey,
                            ed25519.Ed25519PrivateKey)):
        raise ConfigError(UNKNOWN_KEY_FILE.format(path=path, found=type(key).__name__))
    _require_supported_curve(key, path)
    return key


def load_public_key(path: Path | str) -> PublicKey:
    """Return the public key in a PKIX ``PUBLIC KEY`` PEM (``cosign.pub``); raise ConfigError
    when the file is missing or holds something else."""
    label, body = _read_pem(path, UNKNOWN_PUBLIC_KEY_FILE)
    if label != "PUBLIC KEY":
        found = UNKNOWN_PUBLIC_KEY_FILE.format(path=path, found=f"a {label!r} PEM block")
        hint = PRIVATE_GIVEN_TO_VERIFY if "PRIVATE" in label else PUBLIC_KEY_HINTS.get(label, "")
        raise ConfigError(found + hint)
    try:
        key = serialization.load_der_public_key(body)
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(UNKNOWN_PUBLIC_KEY_FILE.format(
            path=path, found="a 'PUBLIC KEY' block that holds no key it can read")) from None
    if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise ConfigError(UNKNOWN_PUBLIC_KEY_FILE.format(path=path,
                                                         found=f"a {type(key).__name__}"))
    _require_supported_curve(key, path)
    return key


def _require_supported_curve(key: PrivateKey | PublicKey, path: Path | str) -> None:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) \
            and key.curve.name not in SUPPORTED_CURVES:
        raise ConfigError(UNSUPPORTED_CURVE.format(path=path, curve=key.curve.name))


def public_key_pem(key: PrivateKey | PublicKey) -> bytes:
    """Return the PKIX ``PUBLIC KEY`` PEM of a key (what cosign writes to ``cosign.pub``)."""
    public = key.public_key() if hasattr(key, "public_key") else key
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: PrivateKey | PublicKey) -> str:
    """Return a short fingerprint of the public key: sha256 of its DER, first 16 hex digits."""
    public = key.public_key() if hasattr(key, "public_key") else key
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def generate_key_pair(password: str) -> tuple[bytes, bytes]:
    """Return a new ECDSA P-256 key pair as cosign writes it: the encrypted private key PEM and
    the public key PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return encrypt_key_file(der, password), public_key_pem(key)


def encrypt_key_file(pkcs8_der: bytes, password: str) -> bytes:
    """Return ``pkcs8_der`` sealed in cosign's format: scrypt (N=65536, r=8, p=1, a random
    32-byte salt) derives the nacl/secretbox key; PEM ``ENCRYPTED SIGSTORE PRIVATE KEY``."""
    from nacl.secret import SecretBox

    salt = secrets.token_bytes(32)
    nonce = secrets.token_bytes(SecretBox.NONCE_SIZE)
    box = SecretBox(_scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    sealed = box.encrypt(pkcs8_der, nonce).ciphertext
    document = {
        "kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
                "salt": _b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(sealed),
    }
    return pem_encode(SIGSTORE_LABEL, json.dumps(document, separators=(",", ":")).encode())


def decrypt_key_file(body: bytes, password: str, path: Path | str) -> bytes:
    """Return the PKCS#8 DER sealed in a cosign key file's JSON ``body``; raise ConfigError for
    a wrong password or a malformed file (the password is never part of the message)."""
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    try:
        document = json.loads(body)
        kdf, cipher = document["kdf"], document["cipher"]
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        sealed = base64.b64decode(document["ciphertext"], validate=True)
        names = (kdf["name"], cipher["name"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ConfigError(f"{path}: not a cosign key file (its JSON is malformed)") from None
    if names != ("scrypt", "nacl/secretbox"):
        raise ConfigError(f"{path}: key file uses {names[0]}/{names[1]}; shipml reads "
                          "scrypt/nacl/secretbox, as cosign writes")
    if not (1 < n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16
            and len(nonce) == SecretBox.NONCE_SIZE):
        raise ConfigError(f"{path}: key file has unusual scrypt or secretbox parameters "
                          f"(N={n}, r={r}, p={p}); refusing it")
    try:
        return SecretBox(_scrypt(password, salt, n, r, p)).decrypt(sealed, nonce)
    except CryptoError:
        raise ConfigError(WRONG_PASSWORD.format(path=path)) from None


def sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    """Return the signature of ``data``: DER ECDSA/SHA-256, RSA PKCS#1 v1.5/SHA-256, Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def verify_bytes(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """Return whether ``signature`` over ``data`` verifies with ``key``."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def pem_encode(label: str, der: bytes) -> bytes:
    """Return ``der`` as a PEM block with 64-character lines."""
    text = base64.b64encode(der).decode("ascii")
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode()


def is_encrypted(path: Path | str) -> bool:
    """Return whether the key ``path`` names is in cosign's encrypted format (False when it
    cannot be read: loading it says why)."""
    try:
        return _read_pem(path)[0] in ENCRYPTED_LABELS
    except ConfigError:
        return False


def _read_pem(path: Path | str, unknown: str = UNKNOWN_KEY_FILE) -> tuple[str, bytes]:
    """Return the label and body of the first PEM block; ``unknown`` is the message (with
    ``path`` and ``found``) for a file that holds none, which says what the caller reads."""
    if isinstance(path, str) and path.startswith("env://"):
        name = path[len("env://"):]
        if name not in os.environ:
            raise ConfigError(f"{path}: the environment variable {name} is not set; map the "
                              f"secret to it (env: {name}: ${{{{ secrets.{name} }}}})")
        return _parse_pem(os.environ[name], path, unknown)
    path = Path(path)
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes is too large for a key file")
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(f"key file {path} not found; create a pair with `shipml keygen` (or "
                          "`cosign generate-key-pair`) or give the right path") from None
    except IsADirectoryError:
        raise ConfigError(f"key file {path} is a folder, not a file") from None
    except (OSError, UnicodeDecodeError):
        raise ConfigError(unknown.format(path=path, found="no PEM text")) from None
    return _parse_pem(text, path, unknown)


def _parse_pem(text: str, path: Path | str, unknown: str) -> tuple[str, bytes]:
    # The text is key material: no part of it goes into a message, only the block's label.
    if not text.strip():
        raise ConfigError(unknown.format(path=path, found=EMPTY_KEY_FILE))
    match = _PEM.search(text)
    if match is None:
        raise ConfigError(unknown.format(path=path, found="no PEM block"))
    try:
        body = base64.b64decode("".join(match.group(2).split()), validate=True)
    except (ValueError, binascii.Error):
        raise ConfigError(unknown.format(path=path, found="a damaged PEM block")) from None
    return match.group(1), body


def _is_pkcs8(der: bytes) -> bool:
    """PKCS#8 is SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING key }; SEC1 has an
    OCTET STRING where PKCS#8 has the algorithm SEQUENCE."""
    try:
        offset = _skip_header(der, 0)
        version_end = _skip_header(der, offset)
        version_end += _length(der, offset)
        return der[version_end] == 0x30
    except IndexError:
        return False


def _skip_header(der: bytes, offset: int) -> int:
    first = der[offset + 1]
    return offset + 2 + (first & 0x7F if first & 0x80 else 0)


def _length(der: bytes, offset: int) -> int:
    first = der[offset + 1]
    if not first & 0x80:
        return first
    return int.from_bytes(der[offset + 2:offset + 2 + (first & 0x7F)], "big")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32,
                          maxmem=128 * r * n * p + 2**24)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def read_json(data: bytes) -> Any:
    """Return parsed JSON, or None when ``data`` is not JSON."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
