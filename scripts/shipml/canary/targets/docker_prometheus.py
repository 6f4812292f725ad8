"""The Prometheus configuration the docker target needs, from the keys the target runs on.

The analysis reads the request counters and latency histograms of ``shipml serve`` in both slots
(``canary.target.docker.ports``, on 127.0.0.1, where the target starts and probes them): the
stable and the canary swap slots at every promotion, so Prometheus scrapes both, always. The
router (HAProxy on ``listen:port``) serves no metrics; it is where the traffic the analysis judges
must arrive. The scrape interval is ``canary.prometheus.sample_step_s``, which every query
assumes is at least the interval. ``shipml canary --print-prometheus-config`` prints it, and the
demo starts its Prometheus with it: one source for the target, the docs and the demo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from shipml.canary.providers.prometheus import prometheus_duration
from shipml.canary.targets.haproxy import SLOTS
from shipml.errors import ConfigError

#: the path ``shipml serve`` serves its Prometheus metrics on
METRICS_PATH = "/metrics"
#: the longest a scrape may take (Prometheus' own default), never more than the interval
MAX_SCRAPE_TIMEOUT_S = 10.0
NOT_TWO_PORTS = ("{where}: {ports} must be two ports, one per slot, e.g. [8081, 8082]")
HEADER = """\
# Prometheus for the canary of {service} on the docker target, printed by
# `shipml canary --print-prometheus-config` from canary.target.docker and canary.prometheus.
# It scrapes both slots ({slots}): the stable and the canary swap slots at each
# promotion. The router, {router}, serves no metrics: it is where the traffic goes.
# The analysis judges live requests: send traffic to {router} during the rollout,
# at least canary.min_requests ({min_requests}) to the canary per analysis window.
# Start it with: prometheus --config.file=prometheus.yml, and set canary.prometheus.url
# to its address (http://127.0.0.1:9090 by default).
"""


def slot_targets(docker: Mapping[str, Any], where: str = "canary.target.docker.ports") -> list[str]:
    """Return the scrape targets of both slots, ``127.0.0.1:PORT`` in slot order; raise
    ConfigError when ``ports`` is not two ports."""
    ports = list(docker["ports"])
    if len(ports) != len(SLOTS):
        raise ConfigError(NOT_TWO_PORTS.format(where=where, ports=ports))
    return [f"127.0.0.1:{int(port)}" for port in ports]


def router_url(docker: Mapping[str, Any]) -> str:
    """Return the router's URL, where clients (and a load generator) send requests."""
    listen = str(docker["listen"])
    host = "127.0.0.1" if listen in ("0.0.0.0", "::", "") else listen
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{int(docker['port'])}"


def scrape_config(service: str, docker: Mapping[str, Any], prometheus: Mapping[str, Any], *,
                  min_requests: int, where: str = "canary.target.docker.ports") -> str:
    """Return a complete prometheus.yml that scrapes ``service``'s two slots at the interval
    ``canary.prometheus.sample_step_s`` (``prometheus``) expects, with comments that say where
    the traffic goes. Raises ConfigError when ``ports`` is not two ports."""
    targets = slot_targets(docker, where)
    step = float(prometheus.get("sample_step_s", 10))
    interval = prometheus_duration(step)
    body = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{
            "job_name": f"shipml-canary-{service}",
            "scrape_interval": interval,
            "scrape_timeout": prometheus_duration(min(step, MAX_SCRAPE_TIMEOUT_S)),
            "metrics_path": METRICS_PATH,
            "static_configs": [{"targets": targets}],
        }],
    }
    header = HEADER.format(service=service, slots=", ".join(targets), router=router_url(docker),
                           min_requests=min_requests)
    return header + yaml.safe_dump(body, sort_keys=False)
