"""Target ``docker``: the service's revisions as containers on a Docker Engine (the local socket or
``DOCKER_HOST``), host network, each on a fixed loopback port (slot ``a`` or ``b``), behind an
:class:`~shipml.canary.targets.haproxy.HAProxyRouter`; the lock and the state in a
:class:`~shipml.canary.targets.docker_store.DockerStore`. :func:`from_settings` is the factory.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from shipml.canary.engine import Revision
from shipml.canary.targets._docker import (
    LABEL,
    SHADOW_FILE_ENV,
    SHADOW_MOUNT,
    SlotTable,
    container,
    other,
    put,
    remove,
    router_image,
    router_name,
    shadow_holder_name,
    shadow_volume,
)
from shipml.canary.targets.base import Target, serving_environment
from shipml.canary.targets.docker_store import DockerStore
from shipml.canary.targets.haproxy import SLOTS, HAProxyRouter
from shipml.errors import ConfigError, InfrastructureError, first_line

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
NO_SHADOW_MOUNT = ("the stable {name} was started by a shipml without the shadow step (it has no "
                   "{env} and no shadow volume), so it cannot mirror requests to a canary; "
                   "promote once with a plan without a shadow step (its revisions then start "
                   "with the volume), e.g.\n  canary:\n    steps:\n"
                   "      - {{weight: 10, pause: 1m}}\n      - {{weight: 100}}")
NO_MESH = ("canary.steps: shadow_by: mesh needs the mirror of a mesh (kubernetes with istio or "
           "gateway-api); on the docker target the stable's server mirrors: shadow_by: server")
NOT_READY = ("the {role} {revision} ({image}) did not become ready on 127.0.0.1:{port} within "
             "{timeout:g}s; its last log lines:\n{logs}")


@dataclass
class DockerWorkload:
    """Stable and canary containers of ``service`` in slots a and b, behind ``router``."""

    service: str
    client: Any
    router: HAProxyRouter
    slots: SlotTable
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
    #: the router image id: what the shadow volume's holder container is made of
    holder_image: Callable[[], str] | None = None

    def describe(self) -> str:
        """Return how messages name this target."""
        return f"docker service {self.service} (router 127.0.0.1:{self.port})"

    def slot_name(self, slot: str) -> str:
        """Return the container name of ``slot``."""
        return f"{self.service}-{slot}"

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

    # --- revisions --------------------------------------------------------------------------

    def stable(self) -> Revision | None:
        """Return the revision in the stable slot, when the router and its container run."""
        slots = self.slots.read()
        slot = slots.get("stable")
        found = container(self.client, self.slot_name(slot)) if slot in SLOTS else None
        if found is None:
            return None
        record = slots.get("revisions", {}).get(slot) or {}
        image = str(record.get("image", ""))
        if not _pinned(image):
            # Recorded by a shipml that ran tags: name what the container really runs.
            image = str(found.attrs.get("Image") or image)
        return Revision(image, str(record.get("revision", "")))

    def first_deploy(self, revision: Revision) -> None:
        """Run ``revision`` in slot a, wait until ready, then start the router with all traffic
        on it. Raises ConfigError, before anything starts, when a port is in use."""
        router = container(self.client, self.router_name)
        self._check_free({"a", "b"} | (set() if router is not None else {"port", "admin_port"}))
        self._run_slot("a", revision, "first revision")
        router = container(self.client, self.router_name)
        if router is not None:
            remove(router)
        self.router.start({"a": 100, "b": 0})
        self.slots.write({"stable": "a", "revisions": {"a": revision.to_dict()}})
        self._wait_ready(f"http://127.0.0.1:{self.port}", "router", revision, self.port)

    def deploy_canary(self, revision: Revision) -> None:
        """Run ``revision`` in the free slot at weight 0 and wait until it is ready; raise
        ConfigError, before anything starts, when that slot's port is in use."""
        slots = self.slots.read()
        canary = other(str(slots["stable"]))
        self._check_free({canary})
        self.router.set_weight(self.stable(), revision, 0)
        # the stable mirrors to a canary only at a shadow step (whatever an earlier run left)
        self._write_shadow({slot: {} for slot in SLOTS})
        self._run_slot(canary, revision, "canary")
        slots.setdefault("revisions", {})[canary] = revision.to_dict()
        slots["canary"] = canary
        self.slots.write(slots)

    def promote(self, canary: Revision) -> None:
        """Stop any mirroring, all traffic to the canary, let the stable's requests finish, remove
        it, and record the canary's slot as the stable one."""
        slots = self.slots.read()
        stable_slot, canary_slot = self.slots.stable_and_canary()
        self._write_shadow({slot: {} for slot in SLOTS})
        if container(self.client, self.slot_name(canary_slot)) is None:
            return  # promoted already: the old stable's slot was emptied and the slots swapped
        self.router.set_weight(None, canary, 100)
        time.sleep(self.drain_s)
        self._remove_slot(stable_slot)
        revisions = dict(slots.get("revisions", {}))
        revisions.pop(stable_slot, None)
        self.slots.write({"stable": canary_slot, "revisions": revisions})

    def rollback(self, canary: Revision) -> None:
        """Stop any mirroring, all traffic to the stable, let the canary's requests finish,
        remove it."""
        slots = self.slots.read()
        stable_slot, canary_slot = self.slots.stable_and_canary()
        # nothing mirrors to a canary that goes: whatever plan the command was given
        self._write_shadow({slot: {} for slot in SLOTS})
        self.router.set_weight(self.stable(), canary, 0)
        if container(self.client, self.slot_name(canary_slot)) is not None:
            time.sleep(self.drain_s)
            self._remove_slot(canary_slot)
        revisions = dict(slots.get("revisions", {}))
        revisions.pop(canary_slot, None)
        self.slots.write({"stable": stable_slot, "revisions": revisions})

    # --- shadow ------------------------------------------------------------------------------

    def check_shadow(self, by: str = "server") -> None:
        """Raise ConfigError when the stable's container cannot mirror (started without the
        shadow volume and ``SHIPML_SHADOW_FILE``: by a shipml before the shadow step), or for
        ``by: mesh`` (no mesh here)."""
        if by != "server":
            raise ConfigError(NO_MESH)
        slot = str(self.slots.read().get("stable", "a"))
        found = container(self.client, self.slot_name(slot))
        if found is None:
            return
        environment = found.attrs.get("Config", {}).get("Env") or []
        mounts = [mount.get("Destination") for mount in found.attrs.get("Mounts") or []]
        if not any(item.startswith(f"{SHADOW_FILE_ENV}=") for item in environment) \
                or SHADOW_MOUNT not in mounts:
            raise ConfigError(NO_SHADOW_MOUNT.format(name=self.slot_name(slot),
                                                     env=SHADOW_FILE_ENV))

    def set_shadow(self, canary: Revision | None, sample: float, by: str = "server") -> None:
        """Point the stable's shadow file at ``canary``'s slot with ``sample`` (None: clear the
        shadow file of both slots, so neither mirrors). Raises ConfigError when the stable
        cannot mirror."""
        if canary is None:
            self._write_shadow({slot: {} for slot in SLOTS})
            return
        self.check_shadow(by)
        stable_slot, canary_slot = self.slots.stable_and_canary()
        target = {"url": f"http://127.0.0.1:{self.slot_ports[canary_slot]}", "sample": sample,
                  "revision": canary.revision}
        self._write_shadow({stable_slot: target, canary_slot: {}})

    def _write_shadow(self, files: Mapping[str, Mapping[str, Any]]) -> None:
        import json

        put(self._shadow_holder(), {f"{slot}.json": json.dumps(record, sort_keys=True).encode()
                                    for slot, record in files.items()})

    def _shadow_holder(self) -> Any:
        import docker

        name = shadow_holder_name(self.service)
        found = container(self.client, name)
        if found is not None:
            return found
        volume = self._shadow_volume()
        try:
            return self.client.containers.create(
                self.holder_image() if self.holder_image else str(self.router.image()),
                command=["true"], name=name, volumes={volume: {"bind": "/shipml", "mode": "rw"}},
                labels={LABEL: self.service, f"{LABEL}.role": "shadow"})
        except docker.errors.APIError as exc:
            if getattr(exc, "status_code", None) == 409:
                return container(self.client, name)
            raise InfrastructureError(f"cannot create {name}, which writes the shadow files: "
                                      f"{first_line(exc)}") from None

    def _shadow_volume(self) -> str:
        import docker

        name = shadow_volume(self.service)
        try:
            self.client.volumes.create(name, labels={LABEL: self.service})
        except docker.errors.APIError as exc:
            raise InfrastructureError(f"cannot create the volume {name}: "
                                      f"{first_line(exc)}") from None
        return name

    def endpoints(self) -> dict[str, str]:
        """Return each running slot's URL by revision."""
        found = {}
        for slot, record in self.slots.read().get("revisions", {}).items():
            if slot in SLOTS and container(self.client, self.slot_name(slot)) is not None:
                found[str(record["revision"])] = f"http://127.0.0.1:{self.slot_ports[slot]}"
        return found

    @property
    def router_name(self) -> str:
        """Return the router container's name."""
        return router_name(self.service)

    # --- containers -------------------------------------------------------------------------

    # --- containers -------------------------------------------------------------------------

    def _run_slot(self, slot: str, revision: Revision, role: str) -> None:
        import docker

        existing = container(self.client, self.slot_name(slot))
        if existing is not None:
            labels = existing.labels or {}
            if labels.get(f"{LABEL}.revision") == revision.revision and existing.status == "running":
                self._wait_ready(f"http://127.0.0.1:{self.slot_ports[slot]}", role, revision,
                                 self.slot_ports[slot], existing)
                return
            remove(existing)
        port = self.slot_ports[slot]
        # the user's env may set the per-client limit; where and as what the server runs may not
        defaults = serving_environment(revision.revision, self.bind, port)
        environment = {"SHIPML_MAX_CONNECTIONS_PER_CLIENT":
                       defaults.pop("SHIPML_MAX_CONNECTIONS_PER_CLIENT"),
                       **self.environment, **defaults,
                       SHADOW_FILE_ENV: f"{SHADOW_MOUNT}/{slot}.json"}
        # a slot starts mirroring nothing, whatever an earlier rollout left in its file
        self._write_shadow({slot: {}})
        try:
            started = self.client.containers.run(
                revision.image, name=self.slot_name(slot), detach=True, network_mode="host",
                environment=environment,
                volumes={shadow_volume(self.service): {"bind": SHADOW_MOUNT, "mode": "ro"}},
                labels={LABEL: self.service, f"{LABEL}.slot": slot,
                        f"{LABEL}.revision": revision.revision})
        except docker.errors.APIError as exc:
            raise InfrastructureError(f"cannot start the {role} {revision.image} as "
                                      f"{self.slot_name(slot)}: {first_line(exc)}") from None
        self._wait_ready(f"http://127.0.0.1:{port}", role, revision, port, started)

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

    def _check_free(self, roles: set[str]) -> None:
        """Raise ConfigError naming the key of the first port of ``roles`` (``port``,
        ``admin_port``, a slot) that a process other than this service's containers holds."""
        hosts = {"port": self.listen, "admin_port": "127.0.0.1"}
        ports = {"port": self.port, "admin_port": self.admin_port, **self.slot_ports}
        for role in ("port", "admin_port", *SLOTS):
            if role not in roles or (role in SLOTS and container(self.client, self.slot_name(role))):
                continue
            host = hosts.get(role, self.bind)
            if _in_use(host, ports[role]):
                raise ConfigError(PORT_IN_USE.format(key=self.port_keys.get(role, role),
                                                     host=host, port=ports[role]))

    def _remove_slot(self, slot: str) -> None:
        found = container(self.client, self.slot_name(slot))
        if found is not None:
            remove(found, stop_timeout=5)


def from_settings(service: str, settings: Mapping[str, Any], where: Any) -> Target:
    """Return the target of ``canary.target.docker``: the engine's store, the slots and the
    HAProxy router. Raises ConfigError for a bad port list or a port given twice, and
    InfrastructureError when the engine does not answer."""
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
    image = functools.partial(router_image, client, str(settings["router_image"]),
                              str(settings["router_base_image"]))
    slots = SlotTable(client, service)
    slot_ports = {slot: values[slot] for slot in SLOTS}
    listen = str(settings["listen"])
    router = HAProxyRouter(client=client, service=service, image=image, listen=listen,
                           port=values["port"], admin_port=values["admin_port"],
                           slot_ports=slot_ports, slots=slots)
    workload = DockerWorkload(service=service, client=client, router=router, slots=slots,
                              listen=listen, port=values["port"],
                              admin_port=values["admin_port"], slot_ports=slot_ports,
                              bind=str(settings["bind"]), environment=dict(settings["env"]),
                              ready_timeout_s=float(settings["ready_timeout_s"]),
                              drain_s=float(settings["drain_s"]), port_keys=keys,
                              holder_image=image)
    return Target(service=service, store=DockerStore(client, service, image), workload=workload,
                  router=router)


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
