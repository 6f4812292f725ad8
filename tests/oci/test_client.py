"""The registry client against real registries: plain, basic auth (htpasswd) and the bearer
token flow (a local token server the registry trusts)."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shipml.errors import ConfigError, InfrastructureError
from shipml.oci import (
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestNotFound,
    Reference,
    RegistryClient,
    RegistryOptions,
    sha256_digest,
)
from shipml.oci._auth import Credentials, credentials_for, parse_challenge
from shipml.oci.client import fallback_tag
from shipml.oci.media import EMPTY_JSON, Descriptor
from shipml.oci.merge import push_referrer
from tests._services import free_port
from tests.oci._registry import PASSWORD, USER, Registry, TokenServer, push_test_image
from tests.oci.fixtures import write_docker_config

pytestmark = pytest.mark.registry


def _repository() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


# --- manifests, blobs, indexes ------------------------------------------------------------------


def test_a_pushed_image_reads_back_by_tag_and_by_digest(registry: Registry) -> None:
    client = RegistryClient(registry.address)
    repository = _repository()
    digest = push_test_image(client, repository, "v1")
    by_tag = client.get_manifest(Reference(registry.address, repository, tag="v1"))
    by_digest = client.get_manifest(Reference(registry.address, repository, digest=digest))
    assert by_tag.digest == by_digest.digest == digest
    assert by_tag.media_type == OCI_MANIFEST and by_tag.data == by_digest.data
    config = Descriptor.from_dict(by_tag.document()["config"])
    assert json.loads(client.get_blob(repository, config.digest))["os"] == "linux"
    assert client.tags(repository) == ["v1"]


def test_a_blob_is_uploaded_once(registry: Registry) -> None:
    client = RegistryClient(registry.address)
    repository = _repository()
    assert not client.blob_exists(repository, sha256_digest(b"payload"))
    assert client.put_blob(repository, b"payload") == client.put_blob(repository, b"payload")
    assert client.blob_exists(repository, sha256_digest(b"payload"))


def test_an_index_is_stored_and_read_by_digest(registry: Registry) -> None:
    client = RegistryClient(registry.address)
    repository = _repository()
    first = push_test_image(client, repository, "amd64", b"one")
    manifest = client.get_manifest(Reference(registry.address, repository, digest=first))
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**Descriptor(OCI_MANIFEST, first, len(manifest.data)).to_dict(),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    client.put_manifest(repository, "multi", index, OCI_INDEX)
    read = client.get_manifest(Reference(registry.address, repository, tag="multi"))
    assert read.media_type == OCI_INDEX and read.digest == sha256_digest(index)
    assert [item.digest for item in read.layers()] == [first]


def test_a_missing_tag_is_manifest_not_found_exit_2(registry: Registry) -> None:
    client = RegistryClient(registry.address)
    with pytest.raises(ManifestNotFound) as error:
        client.get_manifest(Reference(registry.address, _repository(), tag="nope"))
    assert error.value.exit_code == 2
    assert "no such manifest" in error.value.message


# --- referrers ----------------------------------------------------------------------------------


def _artifact(subject: str, subject_size: int, artifact_type: str, body: bytes,
              client: RegistryClient, repository: str) -> bytes:
    empty = client.put_blob(repository, b"{}")
    layer = client.put_blob(repository, body)
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_JSON, "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/json", "digest": layer, "size": len(body)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
    }).encode()


def test_referrers_fall_back_to_the_tag_schema_on_a_registry_without_the_api(
        registry: Registry) -> None:
    client = RegistryClient(registry.address)
    repository = _repository()
    subject = push_test_image(client, repository, "v1")
    size = len(client.get_manifest(Reference(registry.address, repository, digest=subject)).data)
    sbom = _artifact(subject, size, "application/spdx+json", b'{"sbom": 1}', client, repository)
    scan = _artifact(subject, size, "application/sarif+json", b'{"scan": 1}', client, repository)
    sbom_digest = push_referrer(client, repository, sbom, OCI_MANIFEST, subject,
                                "application/spdx+json")
    push_referrer(client, repository, scan, OCI_MANIFEST, subject, "application/sarif+json")
    push_referrer(client, repository, sbom, OCI_MANIFEST, subject, "application/spdx+json")

    found = client.referrers(repository, subject)
    # pushing a referrer again adds nothing: the index is a set, kept in the order of addition
    assert [item.artifact_type for item in found] == ["application/spdx+json",
                                                      "application/sarif+json"]
    assert fallback_tag(subject) in client.tags(repository)
    only = client.referrers(repository, subject, artifact_type="application/spdx+json")
    assert [item.digest for item in only] == [sbom_digest]
    assert client.referrers(repository, sha256_digest(b"nothing refers to this")) == []


class _ReferrersApi(BaseHTTPRequestHandler):
    """A registry that implements the referrers API (the Debian one does not): it asserts the
    request and answers the spec's index."""

    seen: list[str] = []  # noqa: RUF012 - one server per test

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sha256_digest(b"a"), "size": 1,
             "artifactType": "application/spdx+json"},
            {"mediaType": OCI_MANIFEST, "digest": sha256_digest(b"b"), "size": 1,
             "artifactType": "application/sarif+json"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", OCI_INDEX)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def referrers_api() -> Iterator[str]:
    _ReferrersApi.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ReferrersApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_referrers_use_the_api_where_the_registry_has_it(referrers_api: str) -> None:
    subject = sha256_digest(b"subject")
    client = RegistryClient(referrers_api)
    found = client.referrers("team/model", subject, artifact_type="application/spdx+json")
    assert [item.digest for item in found] == [sha256_digest(b"a")]
    assert _ReferrersApi.seen == [f"/v2/team/model/referrers/{subject}"
                                  "?artifactType=application%2Fspdx%2Bjson"]


# --- basic auth ---------------------------------------------------------------------------------


def test_basic_auth_uses_the_credentials_of_docker_config(basic_registry: Registry,
                                                           docker_login: Path) -> None:
    client = RegistryClient(basic_registry.address)
    repository = _repository()
    digest = push_test_image(client, repository, "v1")
    assert client.resolve(Reference(basic_registry.address, repository, tag="v1")) == digest


def test_basic_auth_without_credentials_is_refused_with_the_fix(basic_registry: Registry) -> None:
    client = RegistryClient(basic_registry.address)
    with pytest.raises(ConfigError) as error:
        client.get_manifest(Reference(basic_registry.address, _repository(), tag="v1"))
    assert error.value.exit_code == 2
    assert error.value.message.startswith(f"registry {basic_registry.address} refused GET ")
    assert "401" in error.value.message and f"docker login {basic_registry.address}" in \
        error.value.message


def test_a_wrong_password_is_refused_and_never_shown(basic_registry: Registry, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "not-the-password-" + uuid.uuid4().hex
    folder = write_docker_config(tmp_path / "docker", basic_registry, password=wrong)
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    with pytest.raises(ConfigError) as error:
        push_test_image(RegistryClient(basic_registry.address), _repository(), "v1")
    assert "401" in error.value.message and wrong not in error.value.message
    assert wrong not in repr(credentials_for(basic_registry.address))


# --- the bearer token flow ----------------------------------------------------------------------


def test_bearer_flow_asks_the_realm_with_service_and_scope(
        token_registry: Registry, token_server: TokenServer, docker_login: Path) -> None:
    client = RegistryClient(token_registry.address)
    repository = _repository()
    token_server.requests.clear()
    digest = push_test_image(client, repository, "v1")
    assert client.resolve(Reference(token_registry.address, repository, tag="v1")) == digest
    scopes = [request["query"]["scope"][0] for request in token_server.requests]  # type: ignore[index]
    assert f"repository:{repository}:pull" in scopes
    assert {f"repository:{repository}:push,pull", f"repository:{repository}:pull,push"} & set(scopes)
    assert all(request["query"]["service"] == ["shipml-test-registry"]  # type: ignore[index]
               and request["authorized"] for request in token_server.requests)


def test_bearer_flow_anonymous_gets_pull_only_and_a_push_is_refused(
        token_registry: Registry, token_server: TokenServer) -> None:
    client = RegistryClient(token_registry.address)
    with pytest.raises(ConfigError) as error:
        client.put_blob(_repository(), b"anonymous push")
    assert "refused" in error.value.message and "401" in error.value.message
    assert not any(request["had_credentials"] for request in token_server.requests[-2:])


def test_credentials_never_print() -> None:
    credentials = Credentials(USER, PASSWORD)
    assert PASSWORD not in repr(credentials) and PASSWORD not in str(credentials)


# --- unreachable, retries -----------------------------------------------------------------------


def test_an_unreachable_registry_is_exit_3_after_the_retries(
        caplog: pytest.LogCaptureFixture) -> None:
    address = f"127.0.0.1:{free_port()}"
    client = RegistryClient(address, RegistryOptions(retries=2, backoff_s=0.01))
    with caplog.at_level(logging.INFO, logger="shipml.oci"), \
            pytest.raises(InfrastructureError) as error:
        client.resolve(Reference.parse(f"{address}/team/model:v1"))
    assert error.value.exit_code == 3
    assert error.value.message == (f"registry {address} unreachable after 3 attempts (connection "
                                   "refused); check that it is up and that the address is right")
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        f"registry {address}: connection refused (attempt 1 of 3)",
        f"registry {address}: connection refused (attempt 2 of 3)"]


class _Flaky(BaseHTTPRequestHandler):
    answers: list[int] = []  # noqa: RUF012 - one server per test

    def do_GET(self) -> None:
        status = type(self).answers.pop(0)
        body = b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}' if status >= 500 \
            else b'{"tags":["v1"]}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("answers", "tags"), [([503, 502, 200], ["v1"]), ([503] * 3, None)])
def test_5xx_is_retried_then_exit_3(answers: list[int], tags: list[str] | None) -> None:
    _Flaky.answers = list(answers)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = RegistryClient(f"127.0.0.1:{server.server_address[1]}",
                                RegistryOptions(retries=2, backoff_s=0.01))
        if tags is not None:
            assert client.tags("team/model") == tags
        else:
            with pytest.raises(ConfigError) as error:
                client.tags("team/model")
            assert "503 UNAVAILABLE: try later" in error.value.message
    finally:
        server.shutdown()
        server.server_close()


# --- references, challenges, Docker's config ----------------------------------------------------


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "name"), [
    ("busybox", "docker.io", "library/busybox", "", "index.docker.io/library/busybox"),
    ("acme/model:1.2", "docker.io", "acme/model", "1.2", "index.docker.io/acme/model"),
    ("ghcr.io/acme/model:sha-abc", "ghcr.io", "acme/model", "sha-abc", "ghcr.io/acme/model"),
    ("127.0.0.1:5000/team/model", "127.0.0.1:5000", "team/model", "", "127.0.0.1:5000/team/model"),
    ("localhost/x:y", "localhost", "x", "y", "localhost/x"),
])
def test_references_parse_as_docker_reads_them(text: str, registry: str, repository: str,
                                               tag: str, name: str) -> None:
    reference = Reference.parse(text)
    assert (reference.registry, reference.repository, reference.tag, reference.name) == \
        (registry, repository, tag, name)


def test_a_digest_pins_the_reference_and_bad_ones_name_the_source() -> None:
    digest = sha256_digest(b"x")
    pinned = Reference.parse(f"127.0.0.1:5000/team/model:v1@{digest}")
    assert pinned.identifier == digest and pinned.is_loopback
    assert str(pinned) == f"127.0.0.1:5000/team/model:v1@{digest}"
    for bad in ("Upper/Case", "ghcr.io/a/b@sha256:short", "ghcr.io/a/b:bad tag", ""):
        with pytest.raises(ConfigError) as error:
            Reference.parse(bad, "--image")
        assert error.value.message.startswith(f"--image: {bad!r} is not an image reference")


def test_challenges_parse_quoted_and_bare_parameters() -> None:
    challenge = parse_challenge('Bearer realm="https://ghcr.io/token",service="ghcr.io",'
                                'scope="repository:acme/model:pull,push"')
    assert challenge is not None and challenge.scheme == "bearer"
    assert dict(challenge.params) == {"realm": "https://ghcr.io/token", "service": "ghcr.io",
                                      "scope": "repository:acme/model:pull,push"}
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic"
    assert parse_challenge("") is None


def test_docker_config_entries_helpers_and_hub_keys(tmp_path: Path) -> None:
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\nread server\necho "{\\"Username\\": \\"robot\\", '
                      '\\"Secret\\": \\"from-helper-$server\\"}"\n')
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "config.json").write_text(json.dumps({
        "auths": {"https://index.docker.io/v1/": {"auth": "aHViOmh1Yi1wYXNz"},
                  "https://registry.example.com": {"username": "u", "password": "p"},
                  "tokens.example.com": {"identitytoken": "refresh-me"}},
        "credHelpers": {"helper.example.com": "fake"},
    }))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    hub = credentials_for("docker.io", env)
    assert hub is not None and (hub.username, hub.secret) == ("hub", "hub-pass")
    plain = credentials_for("registry.example.com", env)
    assert plain is not None and (plain.username, plain.secret) == ("u", "p")
    token = credentials_for("tokens.example.com", env)
    assert token is not None and token.identity_token and token.secret == "refresh-me"
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{helper.parent}{os.pathsep}{old_path}"
    try:
        helped = credentials_for("helper.example.com", env)
    finally:
        os.environ["PATH"] = old_path
    assert helped is not None and helped.secret == "from-helper-helper.example.com"
    assert credentials_for("unknown.example.com", env) is None


def test_a_broken_docker_config_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError) as error:
        credentials_for("ghcr.io", {"DOCKER_CONFIG": str(tmp_path)})
    assert error.value.message.startswith(f"{tmp_path / 'config.json'}: not a Docker config file")


def _push_referrers_at_once(address: str, repository: str, subject: str,
                            artifacts: list[bytes]) -> list[str]:
    """Push each artifact as a referrer of ``subject`` from its own thread, all released
    together; return what the threads raised."""
    import threading

    start = threading.Barrier(len(artifacts))
    failures: list[str] = []

    def writer(artifact: bytes) -> None:
        try:
            start.wait()
            push_referrer(RegistryClient(address), repository, artifact, OCI_MANIFEST, subject,
                          "application/spdx+json")
        except Exception as exc:  # reported by the test, with its round
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=writer, args=(artifact,)) for artifact in artifacts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_concurrent_referrers_of_one_subject_all_stay_in_the_fallback_index(
        registry: Registry) -> None:
    writers, rounds = 4, 6
    lost: list[str] = []
    for round_number in range(rounds):
        client = RegistryClient(registry.address)
        repository = _repository()
        subject = push_test_image(client, repository, "v1")
        size = len(client.get_manifest(Reference(registry.address, repository,
                                                 digest=subject)).data)
        artifacts = [_artifact(subject, size, "application/spdx+json",
                               b'{"sbom": %d}' % number, client, repository)
                     for number in range(writers)]
        assert _push_referrers_at_once(registry.address, repository, subject, artifacts) == []
        found = {item.digest for item in client.referrers(repository, subject)}
        if found != {sha256_digest(artifact) for artifact in artifacts}:
            lost.append(f"round {round_number}: {len(found)} of {writers} referrers")
    assert lost == [], f"{len(lost)} of {rounds} races lost a referrer: {lost}"
