"""What the docker target's parts share on the Docker Engine: container names and labels, files
in a container's ``/shipml`` folder (how the lock, the state and the slot table are kept), the
router image, and the slot table in the router container."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipml.errors import InfrastructureError, first_line

LABEL = "dev.shipml.canary"
#: where each revision container has the service's shadow volume, read-only
SHADOW_MOUNT = "/run/shipml/shadow"
SHADOW_FILE_ENV = "SHIPML_SHADOW_FILE"


def shadow_volume(service: str) -> str:
    """Return the name of the volume that holds the shadow file of each slot."""
    return f"{service}-shadow"


def shadow_holder_name(service: str) -> str:
    """Return the name of the container (never started) through which the runner writes the
    shadow volume: the revisions mount it read-only."""
    return f"{service}-shadow-files"


def router_name(service: str) -> str:
    """Return the router container's name."""
    return f"{service}-router"


def container(client: Any, name: str) -> Any:
    """Return the container called ``name``, or None when there is none."""
    import docker

    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def router_image(client: Any, tag: str, base_image: str) -> str:
    """Return the id of the router image ``tag``: the engine's, else pulled, else built from
    Debian's HAProxy on ``base_image``; raise InfrastructureError when the build fails."""
    import docker

    # The id, not the tag: the lock and the router run the image found here, even if the
    # tag moves meanwhile.
    try:
        return str(client.images.get(tag).id)
    except docker.errors.ImageNotFound:
        pass
    try:
        return str(client.images.pull(tag).id)
    except docker.errors.APIError:
        pass
    # Neither here nor pullable: build Debian's HAProxy on the configured base.
    dockerfile = Path(__file__).resolve().parents[1] / "templates" / "router.Dockerfile"
    try:
        built, _ = client.images.build(fileobj=io.BytesIO(dockerfile.read_bytes()), tag=tag,
                                       network_mode="host", rm=True,
                                       buildargs={"BASE_IMAGE": base_image})
    except docker.errors.BuildError as exc:
        raise InfrastructureError(f"building the router image {tag} on {base_image} failed: "
                                  f"{first_line(exc)}") from None
    return str(built.id)


@dataclass
class SlotTable:
    """Which slot holds the stable, which the canary, and the revision in each: the file
    ``/shipml/slots.json`` of the router container."""

    client: Any
    service: str

    def read(self) -> dict[str, Any]:
        """Return the table; empty when the router or its table is missing."""
        router = container(self.client, router_name(self.service))
        return (read_file(router, "slots.json") or {}) if router is not None else {}

    def write(self, slots: Mapping[str, Any]) -> None:
        """Store the table in the router container (nothing when it is gone)."""
        router = container(self.client, router_name(self.service))
        if router is not None:
            write_file(router, "slots.json", dict(slots))

    def stable_and_canary(self) -> tuple[str, str]:
        """Return the stable's slot and the canary's (the other one when none is recorded)."""
        slots = self.read()
        stable = str(slots.get("stable", "a"))
        return stable, str(slots.get("canary") or other(stable))


def other(slot: str) -> str:
    """Return the slot that is not ``slot``."""
    return "b" if slot == "a" else "a"


def remove(found: Any, stop_timeout: int = 0) -> None:
    """Stop (when ``stop_timeout``) and remove the container; gone already is fine. Raises
    InfrastructureError when the engine refuses."""
    import docker

    try:
        if stop_timeout and found.status == "running":
            found.stop(timeout=stop_timeout)
        found.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if getattr(exc, "status_code", None) != 409:  # removal already in progress
            raise InfrastructureError(f"cannot remove {found.name}: {first_line(exc)}") from None


def put(found: Any, files: Mapping[str, bytes]) -> None:
    """Write ``files`` into the container's ``/shipml`` folder."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        folder = tarfile.TarInfo("shipml")
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
        archive.addfile(folder)
        for name, data in files.items():
            info = tarfile.TarInfo(f"shipml/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    found.put_archive("/", buffer.getvalue())


def write_file(found: Any, name: str, record: Mapping[str, Any]) -> None:
    """Write ``record`` as JSON to ``/shipml/NAME`` in the container."""
    put(found, {name: json.dumps(record, sort_keys=True).encode()})


def read_file(found: Any, name: str) -> dict[str, Any] | None:
    """Return the JSON object in ``/shipml/NAME`` of the container, or None when it is missing
    or not an object."""
    import docker

    try:
        stream, _ = found.get_archive(f"/shipml/{name}")
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
