"""Real registries for the tests: the Debian ``docker-registry`` (distribution 2.8) on
127.0.0.1 with a random port and a temporary storage root, plain, with htpasswd basic auth, or
with token auth against a small local token server that issues ES256 JWTs.

Each helper starts exactly one process and stops exactly that one (by its handle) at the end.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from shipml.oci import OCI_CONFIG, OCI_MANIFEST, RegistryClient, sha256_digest
from shipml.oci.media import Descriptor
from tests._services import free_port, require_tools

REGISTRY_BINARY = "docker-registry"
HTPASSWD_BINARY = "htpasswd"
USER, PASSWORD = "shipml-ci", "s3cret-registry-password"
SERVICE, ISSUER = "shipml-test-registry", "shipml-test-issuer"


def require_registry_tools() -> None:
    """Make sure ``docker-registry`` and ``htpasswd`` are on PATH (``bash .ci/services`` installs
    them); fail the test naming that command when they are not, never skip it."""
    require_tools(REGISTRY_BINARY, HTPASSWD_BINARY)


@dataclass
class Registry:
    """A running registry: its ``host:port`` and what a client needs to log in."""

    address: str
    auth: str = "none"
    requests_seen: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@contextmanager
def run_registry(root: Path, auth: str = "none", token_server: TokenServer | None = None
                 ) -> Iterator[Registry]:
    """Start ``docker-registry serve`` on a free loopback port with its storage under ``root``;
    ``auth`` is none, htpasswd or token. Stops the process it started."""
    port = free_port()
    storage = root / "storage"
    storage.mkdir(parents=True)
    lines = [
        "version: 0.1",
        "log:", "  level: error", "  accesslog:", "    disabled: true",
        "storage:", "  filesystem:", f"    rootdirectory: {storage}", "  delete:",
        "    enabled: true",
        "http:", f"  addr: 127.0.0.1:{port}", f"  secret: {uuid.uuid4().hex}",
    ]
    if auth == "htpasswd":
        htpasswd = root / "htpasswd"
        subprocess.run([HTPASSWD_BINARY, "-Bbc", str(htpasswd), USER, PASSWORD], check=True,
                       capture_output=True)
        lines += ["auth:", "  htpasswd:", "    realm: shipml-test", f"    path: {htpasswd}"]
    elif auth == "token":
        assert token_server is not None
        bundle = root / "token-root.pem"
        bundle.write_bytes(token_server.certificate_pem)
        lines += ["auth:", "  token:", f"    realm: {token_server.url}/token",
                  f"    service: {SERVICE}", f"    issuer: {ISSUER}",
                  f"    rootcertbundle: {bundle}"]
    config = root / "config.yml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/v2/", process, root / "registry.log")
        yield Registry(address=f"127.0.0.1:{port}", auth=auth)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if requests.get(url, timeout=1).status_code in (200, 401):
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not answer at {url} within 20 s")


def push_test_image(client: RegistryClient, repository: str, tag: str, content: bytes = b"model"
                    ) -> str:
    """Push a tiny OCI image (config blob, one layer, manifest) under ``tag``; return its digest."""
    layer = b"shipml test layer: " + content
    layer_digest = client.put_blob(repository, layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
                         "config": {"Labels": {"test": content.decode(errors="replace")}}},
                        separators=(",", ":")).encode()
    config_digest = client.put_blob(repository, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [Descriptor(media_type="application/vnd.oci.image.layer.v1.tar",
                              digest=layer_digest, size=len(layer)).to_dict()],
    }, separators=(",", ":")).encode()
    client.put_manifest(repository, tag, manifest, OCI_MANIFEST)
    return sha256_digest(manifest)


# --- a token server for the bearer flow ---------------------------------------------------------


class TokenServer:
    """Issues the JWTs a registry with ``auth: token`` trusts: ES256, signed by a self-signed
    certificate that is the registry's ``rootcertbundle``, sent in the ``x5c`` header. It grants
    what is asked to ``USER``/``PASSWORD`` and pull-only to anonymous callers, and records each
    request's query and whether it carried credentials."""

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shipml test token issuer")])
        now = dt.datetime.now(dt.timezone.utc)
        self._certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.certificate_pem = self._certificate.public_bytes(serialization.Encoding.PEM)
        self._certificate_der = self._certificate.public_bytes(serialization.Encoding.DER)
        self.requests: list[dict[str, object]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                authorization = self.headers.get("Authorization", "")
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                server.requests.append({"path": urlsplit(self.path).path, "query": query,
                                        "authorized": authorization == expected,
                                        "had_credentials": bool(authorization)})
                if authorization and authorization != expected:
                    self._answer(401, {"details": "wrong user or password"})
                    return
                scopes = query.get("scope", [])
                token = server.issue(scopes, grant_all=bool(authorization),
                                     audience=query.get("service", [""])[0])
                self._answer(200, {"token": token, "expires_in": 300})

            def _answer(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TokenServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def issue(self, scopes: list[str], *, grant_all: bool, audience: str) -> str:
        """Return a signed JWT granting ``scopes`` (pull only unless ``grant_all``)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for scope in scopes:
            for part in scope.split(" "):
                kind, _, rest = part.partition(":")
                name, _, actions = rest.rpartition(":")
                wanted = [a for a in actions.split(",") if a]
                granted = wanted if grant_all else [a for a in wanted if a == "pull"]
                access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self._certificate_der).decode()]}
        claims = {"iss": ISSUER, "sub": USER if grant_all else "", "aud": audience,
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex,
                  "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(claims).encode()))
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
