"""Target ``docker``: the service's revisions as containers on a Docker Engine (the local socket or
``DOCKER_HOST``), host network, each on a fixed loopback port (slot ``a`` or ``b``), and a router
container running HAProxy in front of both, steered through its Runtime API.

What the target keeps lives on the engine: the rollout state and the slot table are files in the
router container (``/shipml/state.json``, ``/shipml/slots.json``); the lock is a container that
never runs, named after the service (creating a name is atomic, so two runs cannot both take it),
holding ``/shipml/lock.json``.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from shipml.canary.engine import Revision, RolloutState
from shipml.canary.lock import Lock, may_take, refuse
from shipml.canary.targets import serving_environment
from shipml.canary.targets.haproxy import SLOTS, RuntimeApi, render_config
from shipml.errors import ConfigError, InfrastructureError, first_line

LABEL = "dev.shipml.canary"
NO_ENGINE = ("the Docker Engine does not answer ({reason}); start it or point DOCKER_HOST at one "
             "(canary.target.type: docker)")
NO_IMAGE = ("{where}: image {image} does not exist: not on the engine and its registry has none "
            "({reason}); give the image shipml build pushed, e.g. REGISTRY/REPOSITORY@sha256:…")
PORT_TWICE = ("{key}: {port} is also {other}; the router, its Runtime API and the two slots "
              "each need a port of their own")
PORT_IN_USE = ("{key}: {host}:{port} is already in use by another process; choose a free port "
               "(nothing was started)")
NO_LOCAL_ID = ("canary.image: {image} names a local image id, and the engine has no such image; "
               "give the image shipml build pushed, e.g. REGISTRY/REPOSITORY@sha256:…")
NOT_THAT_DIGEST = ("canary.image: the engine's image for {image} is {id}, which does not carry "
                   "that digest; refusing it (only the image with exactly that digest may run)")
_IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
NOT_READY = ("the {role} {revision} ({image}) did not become ready on 127.0.0.1:{port} within "
             "{timeout:g}s; its last log lines:\n{logs}")


@dataclass
class DockerTarget:
    """Stable and canary containers of ``service`` behind an HAProxy router."""

    service: str
    client: Any
    router_image: str
    router_base_image: str
    listen: str
    port: int
    admin_port: int
    slot_ports: Mapping[str, int]
    bind: str
    environment: Mapping[str, str]
    ready_timeout_s: float
    drain_s: float
    #: how messages name each port's key (``port``, ``admin_port``, slot ``a``, ``b``)
    port_keys: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, service: str, settings: Mapping[str, Any], where: Any) -> DockerTarget:
        """Return the target of ``canary.target.docker``; raise InfrastructureError when the
        engine does not answer."""
        import docker

        ports = list(settings["ports"])
        if len(ports) != 2:
            raise ConfigError(f"{where('canary', 'target', 'docker', 'ports')}: {ports} must be two "
                              "ports, one per slot, e.g. [8081, 8082]")
        keys = {"port": where("canary", "target", "docker", "port"),
                "admin_port": where("canary", "target", "docker", "admin_port"),
                **{slot: where("canary", "target", "docker", "ports", index)
                   for index, slot in enumerate(SLOTS)}}
        values = {"port": int(settings["port"]), "admin_port": int(settings["admin_port"]),
                  **{slot: int(port) for slot, port in zip(SLOTS, ports, strict=True)}}
        _check_distinct(values, keys)
        try:
            client = docker.from_env(timeout=120)
            client.ping()
        except Exception as exc:  # the SDK raises DockerException and requests errors alike
            raise InfrastructureError(NO_ENGINE.format(reason=first_line(exc))) from None
        return cls(service=service, client=client, router_image=str(settings["router_image"]),
                   router_base_image=str(settings["router_base_image"]),
                   listen=str(settings["listen"]), port=values["port"],
                   admin_port=values["admin_port"],
                   slot_ports={slot: values[slot] for slot in SLOTS},
                   bind=str(settings["bind"]), environment=dict(settings["env"]),
                   ready_timeout_s=float(settings["ready_timeout_s"]),
                   drain_s=float(settings["drain_s"]), port_keys=keys)

    # --- names ------------------------------------------------------------------------------

    def describe(self) -> str:
        """Return how messages name this target."""
        return f"docker service {self.service} (router 127.0.0.1:{self.port})"

    @property
    def router_name(self) -> str:
        """Return the router container's name."""
        return f"{self.service}-router"

    @property
    def lock_name(self) -> str:
        """Return the lock container's name."""
        return f"{self.service}-canary-lock"

    def slot_name(self, slot: str) -> str:
        """Return the container name of ``slot``."""
        return f"{self.service}-{slot}"

    @property
    def api(self) -> RuntimeApi:
        """Return the router's Runtime API client."""
        return RuntimeApi("127.0.0.1", self.admin_port)

    # --- images -----------------------------------------------------------------------------

    def resolve(self, image: str) -> Revision:
        """Return the revision of ``image``, pinned: ``REPOSITORY@sha256:…`` (a manifest digest,
        pulled by that digest when the engine lacks it) or a local image id ``sha256:…``.

        A digest is run as it is and nothing else: a local image is taken only when it carries
        that very digest. A tag (no signature pre-flight asked for) is resolved once, as
        ``docker run`` would (the engine's image of that tag, else pulled), and pinned.
        The revision label is the image id's first 12 hex digits. Raises ConfigError when
        neither the engine nor its registry has the image, or its digest is not the one asked.
        """
        from shipml.oci import Reference

        if _IMAGE_ID.match(image):
            found = self._local(image)
            if found is None:
                raise ConfigError(NO_LOCAL_ID.format(image=image))
            return self._revision(image, found)
        reference = Reference.parse(image, "canary.image")
        if reference.digest:
            pinned = str(reference.with_digest(reference.digest))
            found = self._local(pinned) or self._pull(pinned)
            if not _carries(found, reference):
                raise ConfigError(NOT_THAT_DIGEST.format(image=pinned, id=found.id))
            return self._revision(pinned, found)
        found = self._local(image) or self._pull(image)
        digests = [text for text in found.attrs.get("RepoDigests") or []
                   if _same_repository(text, reference)]
        return self._revision(digests[0] if digests else str(found.id), found)

    def _revision(self, pinned: str, found: Any) -> Revision:
        return Revision(image=pinned, revision=f"{self.service}-{found.id.split(':')[-1][:12]}")

    def _local(self, image: str) -> Any:
        import docker

        try:
            return self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise ConfigError(f"canary.image: {image!r} is not an image reference the engine "
                              f"accepts: {first_line(exc)}") from None

    def _pull(self, image: str) -> Any:
        import docker

        try:
            return self.client.images.pull(image)
        except docker.errors.APIError as exc:  # NotFound and ImageNotFound are APIErrors too
            raise ConfigError(NO_IMAGE.format(where="canary.image", image=image,
                                              reason=first_line(exc))) from None

    def _router_image(self) -> str:
        import docker

        # The id, not the tag: the lock and the router run the image found here, even if the
        # tag moves meanwhile.
        try:
            return str(self.client.images.get(self.router_image).id)
        except docker.errors.ImageNotFound:
            pass
        try:
            return str(self.client.images.pull(self.router_image).id)
        except docker.errors.APIError:
            pass
        # Neither here nor pullable: build Debian's HAProxy on the configured base.
        dockerfile = (Path(__file__).resolve().parents[1] / "templates" / "router.Dockerfile")
        try:
            built, _ = self.client.images.build(fileobj=io.BytesIO(dockerfile.read_bytes()),
                                                tag=self.router_image, network_mode="host",
                                                rm=True,
                                                buildargs={"BASE_IMAGE": self.router_base_image})
        except docker.errors.BuildError as exc:
            raise InfrastructureError(f"building the router image {self.router_image} on "
                                      f"{self.router_base_image} failed: {first_line(exc)}") from None
        return str(built.id)

    # --- lock and state ---------------------------------------------------------------------

    def acquire(self, lock: Lock, now: float) -> None:
        """Take the lock container's name, or take over an expired or dead holder's."""
        import docker

        for _ in range(3):
            existing = self._container(self.lock_name)
            if existing is None:
                try:
                    created = self.client.containers.create(
                        self._router_image(), command=["true"], name=self.lock_name,
                        labels={LABEL: self.service, f"{LABEL}.role": "lock"})
                except docker.errors.APIError as exc:
                    if getattr(exc, "status_code", None) == 409:
                        continue  # someone else created it first: read theirs
                    raise InfrastructureError(f"cannot create the lock {self.lock_name}: "
                                              f"{first_line(exc)}") from None
                _write_file(created, "lock.json", lock.to_dict())
                return
            held = Lock.from_dict(_read_file(existing, "lock.json") or {})
            if held is not None and not may_take(held, lock, now):
                raise refuse(self.service, held, now)
            if held is not None and held.host == lock.host and held.pid == lock.pid:
                _write_file(existing, "lock.json", lock.to_dict())
                return
            _remove(existing)
        raise InfrastructureError(f"could not take the lock {self.lock_name} after 3 tries")

    def release(self, lock: Lock) -> None:
        """Remove the lock container when it is ours."""
        existing = self._container(self.lock_name)
        if existing is None:
            return
        held = Lock.from_dict(_read_file(existing, "lock.json") or {})
        if held is not None and held.host == lock.host and held.pid == lock.pid:
            _remove(existing)

    def read_state(self) -> RolloutState | None:
        """Return the state in the router container, or None."""
        router = self._container(self.router_name)
        record = _read_file(router, "state.json") if router is not None else None
        return RolloutState.from_dict(record, f"{self.router_name}:/shipml/state.json") \
            if record else None

    def write_state(self, state: RolloutState) -> None:
        """Write the state into the router container."""
        router = self._container(self.router_name)
        if router is None:
            raise InfrastructureError(f"the router container {self.router_name} is gone; the "
                                      "rollout state cannot be stored")
        _write_file(router, "state.json", state.to_dict())

    def _slots(self) -> dict[str, Any]:
        router = self._container(self.router_name)
        return (_read_file(router, "slots.json") or {}) if router is not None else {}

    def _write_slots(self, slots: Mapping[str, Any]) -> None:
        router = self._container(self.router_name)
        if router is not None:
            _write_file(router, "slots.json", dict(slots))

    # --- revisions --------------------------------------------------------------------------

    def stable(self) -> Revision | None:
        """Return the revision in the stable slot, when the router and its container run."""
        slots = self._slots()
        slot = slots.get("stable")
        container = self._container(self.slot_name(slot)) if slot in SLOTS else None
        if container is None:
            return None
        record = slots.get("revisions", {}).get(slot) or {}
        image = str(record.get("image", ""))
        if not _pinned(image):
            # Recorded by a shipml that ran tags: name what the container really runs.
            image = str(container.attrs.get("Image") or image)
        return Revision(image, str(record.get("revision", "")))

    def first_deploy(self, revision: Revision) -> None:
        """Run ``revision`` in slot a, wait until ready, then start the router with all traffic
        on it. Raises ConfigError, before anything starts, when a port is in use."""
        router = self._container(self.router_name)
        self._check_free({"a", "b"} | (set() if router is not None else {"port", "admin_port"}))
        self._run_slot("a", revision, "first revision")
        router = self._container(self.router_name)
        if router is not None:
            _remove(router)
        self._start_router({"a": 100, "b": 0})
        self._write_slots({"stable": "a", "revisions": {"a": revision.to_dict()}})
        self._wait_ready(f"http://127.0.0.1:{self.port}", "router", revision, self.port)

    def deploy_canary(self, revision: Revision) -> None:
        """Run ``revision`` in the free slot at weight 0 and wait until it is ready; raise
        ConfigError, before anything starts, when that slot's port is in use."""
        slots = self._slots()
        stable = str(slots["stable"])
        canary = _other(stable)
        self._check_free({canary})
        self.api.set_weights({canary: 0, stable: 100})
        self._run_slot(canary, revision, "canary")
        slots.setdefault("revisions", {})[canary] = revision.to_dict()
        slots["canary"] = canary
        self._write_slots(slots)

    def set_weight(self, weight: int) -> None:
        """Give the canary slot ``weight`` and the stable slot the rest."""
        slots = self._slots()
        stable = str(slots["stable"])
        canary = str(slots.get("canary") or _other(stable))
        self.api.set_weights({canary: weight, stable: 100 - weight})

    def promote(self) -> None:
        """All traffic to the canary, let the stable's requests finish, remove it, and record the
        canary's slot as the stable one."""
        slots = self._slots()
        stable = str(slots["stable"])
        canary = str(slots.get("canary") or _other(stable))
        if self._container(self.slot_name(canary)) is None:
            return  # promoted already: the old stable's slot was emptied and the slots swapped
        self.api.set_weights({canary: 100, stable: 0})
        time.sleep(self.drain_s)
        self._remove_slot(stable)
        revisions = dict(slots.get("revisions", {}))
        revisions.pop(stable, None)
        self._write_slots({"stable": canary, "revisions": revisions})

    def rollback(self) -> None:
        """All traffic to the stable, let the canary's requests finish, remove it."""
        slots = self._slots()
        stable = str(slots.get("stable", "a"))
        canary = str(slots.get("canary") or _other(stable))
        self.api.set_weights({canary: 0, stable: 100})
        if self._container(self.slot_name(canary)) is not None:
            time.sleep(self.drain_s)
            self._remove_slot(canary)
        revisions = dict(slots.get("revisions", {}))
        revisions.pop(canary, None)
        self._write_slots({"stable": stable, "revisions": revisions})

    def endpoints(self) -> dict[str, str]:
        """Return each running slot's URL by revision."""
        found = {}
        for slot, record in self._slots().get("revisions", {}).items():
            if slot in SLOTS and self._container(self.slot_name(slot)) is not None:
                found[str(record["revision"])] = f"http://127.0.0.1:{self.slot_ports[slot]}"
        return found

    # --- containers -------------------------------------------------------------------------

    def _container(self, name: str) -> Any:
        import docker

        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def _run_slot(self, slot: str, revision: Revision, role: str) -> None:
        import docker

        existing = self._container(self.slot_name(slot))
        if existing is not None:
            labels = existing.labels or {}
            if labels.get(f"{LABEL}.revision") == revision.revision and existing.status == "running":
                self._wait_ready(f"http://127.0.0.1:{self.slot_ports[slot]}", role, revision,
                                 self.slot_ports[slot], existing)
                return
            _remove(existing)
        port = self.slot_ports[slot]
        # the user's env may set the per-client limit; where and as what the server runs may not
        defaults = serving_environment(revision.revision, self.bind, port)
        environment = {"SHIPML_MAX_CONNECTIONS_PER_CLIENT":
                       defaults.pop("SHIPML_MAX_CONNECTIONS_PER_CLIENT"),
                       **self.environment, **defaults}
        try:
            container = self.client.containers.run(
                revision.image, name=self.slot_name(slot), detach=True, network_mode="host",
                environment=environment,
                labels={LABEL: self.service, f"{LABEL}.slot": slot,
                        f"{LABEL}.revision": revision.revision})
        except docker.errors.APIError as exc:
            raise InfrastructureError(f"cannot start the {role} {revision.image} as "
                                      f"{self.slot_name(slot)}: {first_line(exc)}") from None
        self._wait_ready(f"http://127.0.0.1:{port}", role, revision, port, container)

    def _wait_ready(self, url: str, role: str, revision: Revision, port: int,
                    container: Any = None) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if container is not None:
                container.reload()
                if container.status in ("exited", "dead"):
                    break
            time.sleep(0.2)
        logs = ""
        if container is not None:
            logs = container.logs(tail=15).decode(errors="replace")
        raise InfrastructureError(NOT_READY.format(role=role, revision=revision.revision,
                                                   image=revision.image, port=port,
                                                   timeout=self.ready_timeout_s,
                                                   logs=logs or "(none)"))

    def _start_router(self, weights: Mapping[str, int]) -> None:
        config = render_config(listen=self.listen, port=self.port, admin_port=self.admin_port,
                               servers=self.slot_ports, weights=weights)
        container = self.client.containers.create(
            self._router_image(), command=["haproxy", "-db", "-W", "-f", "/shipml/haproxy.cfg"],
            name=self.router_name, network_mode="host",
            labels={LABEL: self.service, f"{LABEL}.role": "router"})
        _put(container, {"haproxy.cfg": config.encode()})
        container.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.api.command("show info")
                return
            except InfrastructureError:
                container.reload()
                if container.status in ("exited", "dead"):
                    break
                time.sleep(0.2)
        raise InfrastructureError("the router did not open its Runtime API on 127.0.0.1:"
                                  f"{self.admin_port}: {container.logs(tail=10).decode(errors='replace')}")

    def _check_free(self, roles: set[str]) -> None:
        """Raise ConfigError naming the key of the first port of ``roles`` (``port``,
        ``admin_port``, a slot) that a process other than this service's containers holds."""
        hosts = {"port": self.listen, "admin_port": "127.0.0.1"}
        ports = {"port": self.port, "admin_port": self.admin_port, **self.slot_ports}
        for role in ("port", "admin_port", *SLOTS):
            if role not in roles or (role in SLOTS and self._container(self.slot_name(role))):
                continue
            host = hosts.get(role, self.bind)
            if _in_use(host, ports[role]):
                raise ConfigError(PORT_IN_USE.format(key=self.port_keys.get(role, role),
                                                     host=host, port=ports[role]))

    def _remove_slot(self, slot: str) -> None:
        container = self._container(self.slot_name(slot))
        if container is not None:
            _remove(container, stop_timeout=5)


def _check_distinct(ports: Mapping[str, int], keys: Mapping[str, str]) -> None:
    """Raise ConfigError naming both keys when two of the router's, the Runtime API's and the
    slots' ports are the same."""
    seen: dict[int, str] = {}
    for role, port in ports.items():
        if port in seen:
            raise ConfigError(PORT_TWICE.format(key=keys[role], port=port, other=keys[seen[port]]))
        seen[port] = role


def _in_use(host: str, port: int) -> bool:
    """Return whether a socket is bound to ``host:port`` (a listener; connections that linger
    in TIME_WAIT do not count, as for HAProxy and the server, which reuse the address)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _pinned(image: str) -> bool:
    """Return whether ``image`` names one image for good: a digest or a local image id."""
    return "@sha256:" in image or bool(_IMAGE_ID.match(image))


def _same_repository(text: str, reference: Any) -> bool:
    """Return whether the engine's ``REPOSITORY@DIGEST`` ``text`` names ``reference``'s
    repository (Docker shortens Docker Hub's names; both are parsed the same way)."""
    from shipml.oci import Reference

    try:
        found = Reference.parse(text)
    except ConfigError:
        return False
    return (found.registry, found.repository) == (reference.registry, reference.repository)


def _carries(image: Any, reference: Any) -> bool:
    """Return whether the engine's ``image`` was pulled or pushed as ``reference``'s digest."""
    from shipml.oci import Reference

    for text in image.attrs.get("RepoDigests") or []:
        if _same_repository(text, reference) and Reference.parse(text).digest == reference.digest:
            return True
    return False


def _other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def _remove(container: Any, stop_timeout: int = 0) -> None:
    import docker

    try:
        if stop_timeout and container.status == "running":
            container.stop(timeout=stop_timeout)
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if getattr(exc, "status_code", None) != 409:  # removal already in progress
            raise InfrastructureError(f"cannot remove {container.name}: {first_line(exc)}") from None


def _put(container: Any, files: Mapping[str, bytes]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        folder = tarfile.TarInfo("shipml")
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
        archive.addfile(folder)
        for name, data in files.items():
            info = tarfile.TarInfo(f"shipml/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    container.put_archive("/", buffer.getvalue())


def _write_file(container: Any, name: str, record: Mapping[str, Any]) -> None:
    _put(container, {name: json.dumps(record, sort_keys=True).encode()})


def _read_file(container: Any, name: str) -> dict[str, Any] | None:
    import docker

    try:
        stream, _ = container.get_archive(f"/shipml/{name}")
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = archive.next()
        handle = archive.extractfile(member) if member is not None else None
        if handle is None:
            return None
        try:
            record = json.loads(handle.read())
        except ValueError:
            return None
    return record if isinstance(record, dict) else None
