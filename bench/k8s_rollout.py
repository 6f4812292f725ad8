"""Figures of shipml canary on the kubernetes target against the real control plane of .ci/k8s
(bash .ci/services), per method, in one run: a canary answering 500 on half its requests (a
stand-in exporter per revision, scraped by a real Prometheus, as in tests/canary/k8s) is rolled
back after ``failure_limit: 6``.

- API requests per analysis round: every request the target sends, counted in the process by a
  wrapper of ``KubeApi._call``, between the starts of consecutive analysis rounds (median and
  mean: the heartbeat renews the Lease every third of ``canary.lease``, not every round);
- seconds from the failed analysis (the end of the round that reached the failure limit) to the
  canary at weight 0 as the API server reports it (polled every 0.1 s from outside the run).

    .venv/bin/python bench/k8s_rollout.py [--methods replicas,gateway-api,istio,kserve]

KServe's controller does not run here: the tests' stand-in marks each InferenceService Ready.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from tests.canary.k8s.conftest import Cluster, Kube, Rollout, _kubeconfig_path  # noqa: E402
from tests.canary.k8s.test_methods import KServeStandIn  # noqa: E402
from tests.canary.k8s.test_methods import _canary_weight as kserve_weight  # noqa: E402

#: loaded by the shipml canary process (PYTHONPATH): one line per API request and per round
_SITECUSTOMIZE = '''
import os, time
from shipml.canary import analysis, core
from shipml.canary.targets import kube_api
log = open(os.environ["SHIPML_BENCH_LOG"], "a", buffering=1)
call = kube_api.KubeApi._call
def counted(self, method, path, **kw):
    log.write(f"{time.time()} api {method} {path}\\n")
    return call(self, method, path, **kw)
kube_api.KubeApi._call = counted
analyse = analysis.analyse
def timed(*a, **kw):
    log.write(f"{time.time()} round-start\\n")
    try:
        return analyse(*a, **kw)
    finally:
        log.write(f"{time.time()} round-end\\n")
analysis.analyse = timed
if hasattr(core, "analyse"):
    core.analyse = timed
'''


def _canary_weight(rollout: Rollout, method: str) -> int | None:
    admin = rollout.cluster.admin
    if method == "kserve":
        return None if admin.get(rollout.path("InferenceService")) is None else (
            kserve_weight(rollout, method))
    if method == "replicas":
        deployment = rollout.deployment("canary")
        return None if deployment is None else int(deployment["spec"]["replicas"])
    kind = "HTTPRoute" if method == "gateway-api" else "VirtualService"
    found = admin.get(rollout.path(kind))
    if found is None:
        return None
    if method == "gateway-api":
        refs = found["spec"]["rules"][0]["backendRefs"]
        return int(next(r["weight"] for r in refs if r["name"].endswith("-canary")))
    routes = found["spec"]["http"][0]["route"]
    return int(next(r["weight"] for r in routes if r["destination"]["subset"] == "canary"))


def measure(cluster: Cluster, method: str, folder: Path) -> dict[str, Any]:
    """Return the figures of one rolled-back rollout of ``method``."""
    rollout = Rollout(cluster=cluster, namespace=cluster.namespace(), folder=folder)
    ready = KServeStandIn(rollout) if method == "kserve" else None
    try:
        rollout.metrics({"stable": 0.0, "canary": 0.5})
        first = rollout.run(rollout.config("stable", method=method))
        assert first.returncode == 0, first.stdout + first.stderr
        hooks = folder / "hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
        log = folder / "api.log"
        env = {**rollout.environment(), "PYTHONPATH": f"{hooks}:{ROOT / 'scripts'}",
               "SHIPML_BENCH_LOG": str(log)}
        # six failed rounds before the rollback: five intervals to count requests in
        config = rollout.config("canary", method=method, failure_limit=6,
                                steps=[{"weight": 25, "pause": "60s"}, {"weight": 100}])
        zero_at: list[float] = []
        seen_up = threading.Event()
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                weight = _canary_weight(rollout, method)
                if weight:
                    seen_up.set()
                elif seen_up.is_set() and not zero_at:
                    zero_at.append(time.time())
                time.sleep(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        run = subprocess.run(rollout.command(config), env=env, capture_output=True, text=True,
                             timeout=600, check=False, cwd=ROOT)
        done.set()
        poller.join()
        assert run.returncode == 1, run.stdout + run.stderr
        events = [line.split(" ", 2) for line in log.read_text().splitlines()]
        starts = [i for i, event in enumerate(events) if event[1] == "round-start"]
        per_round = [sum(1 for e in events[a:b] if e[1] == "api")
                     for a, b in itertools.pairwise(starts)]
        last_end = max(float(e[0]) for e in events if e[1] == "round-end")
        return {"method": method, "rounds": len(starts),
                "api_requests_per_round": statistics.median(per_round) if per_round else None,
                "api_requests_per_round_mean": round(statistics.mean(per_round), 2)
                if per_round else None,
                "api_requests_whole_run": sum(1 for e in events if e[1] == "api"),
                "failed_analysis_to_weight_0_s": round(zero_at[0] - last_end, 2)
                if zero_at else None}
    finally:
        if ready is not None:
            ready.stop.set()
            ready.thread.join()
        rollout.end()
        cluster.admin.call("DELETE", f"/api/v1/namespaces/{rollout.namespace}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="replicas,gateway-api,istio,kserve")
    args = parser.parse_args()
    kubeconfig = _kubeconfig_path()
    assert kubeconfig is not None, "bash .ci/services first (it starts .ci/k8s)"
    cluster = Cluster(kubeconfig=kubeconfig, admin=Kube(kubeconfig))
    figures = []
    for method in args.methods.split(","):
        with tempfile.TemporaryDirectory() as folder:
            figures.append(measure(cluster, method, Path(folder)))
        print(json.dumps(figures[-1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
