"""Delegation to the cosign CLI when it is on PATH: the same operations, cosign's own code.

Each function builds cosign's argv and runs it; the password reaches cosign through the
inherited ``COSIGN_PASSWORD``, never through argv or a message. Keyless signing (``cosign sign``
without ``--key``) picks up the GitHub Actions OIDC token itself (``id-token: write``).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shipml.errors import ConfigError, InfrastructureError
from shipml.oci import Reference
from shipml.sign import formats

log = logging.getLogger("shipml.sign")

COSIGN_MISSING = ("sign.cosign is 'always' but cosign is not on PATH; install it first "
                  "(uses: sigstore/cosign-installer@<sha> # v3) or set cosign: auto")
#: what cosign prints when it could not open the key: bad input, not an outage
_KEY_TROUBLE = ("decrypt", "password", "no such file", "loading", "invalid key", "reading key")
TIMEOUT_S = 600


def find_cosign(mode: str) -> str | None:
    """Return the cosign executable to delegate to under ``mode`` (auto, always, never), or None
    for the built-in signer. Raises ConfigError for ``always`` without cosign on PATH."""
    if mode == "never":
        return None
    found = shutil.which("cosign")
    if found is None and mode == "always":
        raise ConfigError(COSIGN_MISSING)
    return found


def sign(cosign: str, image: Reference, key: str | None, *, annotations: Mapping[str, str],
         tlog: bool, plain_http: bool) -> None:
    """``cosign sign`` the pinned ``image`` (keyless when ``key`` is None)."""
    argv = [cosign, "sign", "--yes"]
    if key is not None:
        argv += ["--key", key]
        if not tlog:
            argv.append("--tlog-upload=false")
    for name, value in sorted(annotations.items()):
        argv += ["-a", f"{name}={value}"]
    _run([*argv, *_http(plain_http), str(image)], "sign")


def attest(cosign: str, image: Reference, key: str | None, *, predicate: Mapping[str, Any],
           predicate_type: str, tlog: bool, plain_http: bool) -> None:
    """``cosign attest`` the predicate to the pinned ``image``."""
    with tempfile.TemporaryDirectory(prefix="shipml-attest-") as folder:
        path = Path(folder) / "predicate.json"
        path.write_bytes(formats.go_json(predicate))
        argv = [cosign, "attest", "--yes", "--type", predicate_type, "--predicate", str(path)]
        if key is not None:
            argv += ["--key", key]
            if not tlog:
                argv.append("--tlog-upload=false")
        _run([*argv, *_http(plain_http), str(image)], "attest")


def verify(cosign: str, image: Reference, public_key: str, *, tlog: bool,
           plain_http: bool) -> tuple[bool, str]:
    """``cosign verify``: return whether it passed and its last line of output."""
    argv = [cosign, "verify", "--key", public_key, *_tlog_flags(tlog), *_http(plain_http),
            str(image)]
    completed = _run(argv, "verify", check=False)
    return completed.returncode == 0, _last_line(completed)


def verify_attestation(cosign: str, image: Reference, public_key: str, *, predicate_type: str,
                       tlog: bool, plain_http: bool) -> tuple[list[dict[str, Any]], str]:
    """``cosign verify-attestation``: return the in-toto statements of the envelopes it
    verified (empty when it failed) and its last line of output."""
    argv = [cosign, "verify-attestation", "--key", public_key, "--type", predicate_type,
            *_tlog_flags(tlog), *_http(plain_http), str(image)]
    completed = _run(argv, "verify-attestation", check=False)
    statements: list[dict[str, Any]] = []
    if completed.returncode == 0:
        for line in completed.stdout.splitlines():
            try:
                envelope = formats.parse_envelope(line.encode())
                statement = json.loads(envelope.payload)
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(statement, dict):
                statements.append(statement)
    return statements, _last_line(completed)


def generate_key_pair(cosign: str, prefix: str) -> None:
    """``cosign generate-key-pair`` into ``PREFIX.key`` and ``PREFIX.pub``."""
    _run([cosign, "generate-key-pair", "--output-key-prefix", prefix], "generate-key-pair")


def _tlog_flags(tlog: bool) -> Sequence[str]:
    return () if tlog else ("--insecure-ignore-tlog=true",)


def _http(plain_http: bool) -> Sequence[str]:
    return ("--allow-http-registry",) if plain_http else ()


def _run(argv: list[str], what: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    log.info("shipml: cosign %s", " ".join(argv[1:]))
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S,
                                   check=False)
    except subprocess.TimeoutExpired:
        raise InfrastructureError(f"cosign {what} did not finish in {TIMEOUT_S} s") from None
    except OSError as exc:
        raise ConfigError(f"cosign could not be started ({exc.strerror})") from None
    if completed.stderr.strip():
        log.info("%s", completed.stderr.rstrip())
    if check and completed.returncode != 0:
        message = f"cosign {what} failed (exit {completed.returncode}): {_last_line(completed)}"
        if any(marker in completed.stderr.lower() for marker in _KEY_TROUBLE):
            raise ConfigError(message)
        raise InfrastructureError(message)
    return completed


def _last_line(completed: subprocess.CompletedProcess[str]) -> str:
    for line in reversed((completed.stderr + "\n" + completed.stdout).splitlines()):
        if line.strip() and not line.lstrip().startswith("{"):
            return line.strip()
    return f"exit {completed.returncode}"
