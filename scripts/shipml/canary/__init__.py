"""shipml canary: staged promotion with automatic rollback.

- :mod:`shipml.canary.plan`: the rollout plan from ``canary:`` (steps, interval, limits);
- :mod:`shipml.canary.engine`: pure transitions (progressing, paused, promoted, rolled back,
  aborted), one log line per decision;
- :mod:`shipml.canary.judges` and :mod:`shipml.canary.analysis`: absolute, relative and
  Mann-Whitney U judges over the values of metric providers (:mod:`shipml.canary.providers`:
  Prometheus, the probe);
- :mod:`shipml.canary.lock`: one rollout per service, with a lease;
- :mod:`shipml.canary.targets`: docker (HAProxy router) and kubernetes (replicas, gateway-api,
  istio, kserve);
- :mod:`shipml.canary.core`: the runner that applies decisions and writes the stage result.
"""

from __future__ import annotations
