"""The docker target's traffic router: HAProxy's configuration as text (pure), its Runtime API
over TCP (thin), and :class:`HAProxyRouter`, the router container steered through that API.

Two servers in one backend, slots ``a`` and ``b``, on fixed loopback ports: one holds the stable,
the other the canary. ``set weight service/SLOT N`` moves traffic at once, without a reload.
Health checks on ``/v2/health/ready`` keep a server that is not ready out of rotation, and
``retry-on conn-failure`` with ``redispatch`` resends a request whose server went away.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shipml.canary.engine import Revision
from shipml.canary.targets._docker import LABEL, SlotTable, put, router_name
from shipml.errors import InfrastructureError

BACKEND = "service"
SLOTS = ("a", "b")


def render_config(*, listen: str, port: int, admin_port: int, servers: Mapping[str, int],
                  weights: Mapping[str, int]) -> str:
    """Return haproxy.cfg: a frontend on ``listen:port``, the admin socket on 127.0.0.1 and one
    server per slot (``servers``: slot → port on 127.0.0.1) at its weight."""
    lines = [
        "global",
        f"    stats socket ipv4@127.0.0.1:{admin_port} level admin",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    option redispatch",
        "    retries 3",
        "    retry-on conn-failure empty-response",
        "",
        "frontend canary",
        f"    bind {listen}:{port}",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        "    balance roundrobin",
        "    option httpchk GET /v2/health/ready",
    ]
    for slot in SLOTS:
        lines.append(f"    server {slot} 127.0.0.1:{servers[slot]} weight {weights.get(slot, 0)} "
                     "check inter 500ms fall 2 rise 1")
    return "\n".join(lines) + "\n"


class RuntimeApi:
    """HAProxy's Runtime API on ``host:port`` (``stats socket ipv4@... level admin``)."""

    def __init__(self, host: str, port: int, timeout_s: float = 3.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s

    def command(self, line: str) -> str:
        """Send one command and return HAProxy's answer; raise InfrastructureError when the
        socket does not answer or HAProxy refuses the command."""
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout_s) as conn:
                conn.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise InfrastructureError(f"the router's Runtime API at {self.host}:{self.port} did "
                                      f"not answer {line!r}: {exc}") from None
        answer = b"".join(chunks).decode(errors="replace").strip()
        if answer and not answer.startswith(("#", "1", "0")) and "\n" not in answer:
            raise InfrastructureError(f"HAProxy refused {line!r}: {answer}")
        return answer

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Set each slot's weight (0-256)."""
        for slot, weight in weights.items():
            self.command(f"set weight {BACKEND}/{slot} {int(weight)}")

    def weights(self) -> dict[str, int]:
        """Return each slot's current weight, from ``show servers state``."""
        answer = self.command(f"show servers state {BACKEND}")
        found: dict[str, int] = {}
        header: list[str] = []
        for line in answer.splitlines():
            if line.startswith("# be_id"):
                header = line[2:].split()
            elif line and not line.startswith("#") and header:
                fields = dict(zip(header, line.split(), strict=False))
                if "srv_name" in fields and "srv_uweight" in fields:
                    found[fields["srv_name"]] = int(fields["srv_uweight"])
        return found


@dataclass
class HAProxyRouter:
    """The router container of ``service``: HAProxy on ``listen:port`` in front of the two slots,
    its Runtime API on 127.0.0.1:``admin_port``; the slot table says which slot is which."""

    client: Any
    service: str
    image: Callable[[], str]
    listen: str
    port: int
    admin_port: int
    slot_ports: Mapping[str, int]
    slots: SlotTable

    @property
    def api(self) -> RuntimeApi:
        """Return the router's Runtime API client."""
        return RuntimeApi("127.0.0.1", self.admin_port)

    def set_weight(self, stable: Revision | None, canary: Revision | None, weight: int) -> None:
        """Give the canary's slot ``weight`` and the stable's the rest, at once (no reload).
        The slot table, not the revisions, says which slot is which; raise InfrastructureError
        when the Runtime API does not answer."""
        stable_slot, canary_slot = self.slots.stable_and_canary()
        self.api.set_weights({canary_slot: weight, stable_slot: 100 - weight})

    def weights(self) -> dict[str, int]:
        """Return each running revision's weight now, by revision, from the Runtime API."""
        revisions = self.slots.read().get("revisions", {})
        return {str(revisions[slot]["revision"]): weight
                for slot, weight in self.api.weights().items() if slot in revisions}

    def start(self, weights: Mapping[str, int]) -> None:
        """Start the router container with ``weights`` by slot and return once its Runtime API
        answers; raise InfrastructureError when it does not."""
        config = render_config(listen=self.listen, port=self.port, admin_port=self.admin_port,
                               servers=self.slot_ports, weights=weights)
        container = self.client.containers.create(
            self.image(), command=["haproxy", "-db", "-W", "-f", "/shipml/haproxy.cfg"],
            name=router_name(self.service), network_mode="host",
            labels={LABEL: self.service, f"{LABEL}.role": "router"})
        put(container, {"haproxy.cfg": config.encode()})
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
                                  f"{self.admin_port}: "
                                  f"{container.logs(tail=10).decode(errors='replace')}")
