"""What a shadow step judges: the series the stable exports while it mirrors a share of its live
``/predict`` requests to the canary (:mod:`shipml.serve.shadow`), in place of the Prometheus
metrics of user traffic, which the canary does not get at a shadow step.

- ``shadow-error-rate``: the share of mirrored requests the canary did not answer with 2xx
  (absolute; the ``max`` of the ``error_rate`` metric, else 1%);
- ``shadow-p95-latency``: the canary's p95 round trip against the stable's own p95 for the same
  requests (relative; ``max_ratio`` and ``slack`` of the ``p95_ms`` metric, else 1.2 and 5 ms:
  the canary's figure includes one network hop, the slack absorbs it);
- ``shadow-agreement``: the share of compared answers whose predictions match the stable's; a
  figure only, unless the step sets ``min_agreement``.

The probe's metrics (sent to both revisions directly) are judged at a shadow step as at any other.
"""

from __future__ import annotations

from collections.abc import Sequence

from shipml.canary.analysis import MetricSpec
from shipml.canary.plan import Step

#: the shadow step's defaults when the configuration names no error-rate or p95 metric
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_MAX_RATIO = 1.2
DEFAULT_SLACK_MS = 5.0


def shadow_specs(specs: Sequence[MetricSpec], step: Step) -> tuple[MetricSpec, ...]:
    """Return the metrics a shadow ``step`` judges: the shadow series (thresholds taken from the
    configured ``error_rate`` and ``p95_ms`` metrics) and every metric not read from Prometheus
    (the probe's). Return ``specs`` unchanged for a weight step and for a mirror of the mesh,
    which drops the canary's answers: there the canary's own series (only mirrored requests
    reach it) are judged."""
    if not step.shadow or step.shadow_by != "server":
        return tuple(specs)
    prometheus = [spec for spec in specs if spec.provider == "prometheus"]
    errors = next((spec for spec in prometheus if spec.query == "error_rate"
                   and spec.maximum is not None), None)
    latency = next((spec for spec in prometheus if spec.query == "p95_ms"
                    and spec.judge == "relative" and spec.max_ratio is not None), None)
    found = [
        MetricSpec(name="shadow-error-rate", provider="prometheus", query="shadow_error_rate",
                   judge="absolute", unit="ratio",
                   maximum=errors.maximum if errors else DEFAULT_MAX_ERROR_RATE),
        MetricSpec(name="shadow-p95-latency", provider="prometheus", query="shadow_p95_ms",
                   judge="relative", unit="ms",
                   max_ratio=latency.max_ratio if latency else DEFAULT_MAX_RATIO,
                   slack=latency.slack if latency else DEFAULT_SLACK_MS),
        MetricSpec(name="shadow-agreement", provider="prometheus", query="shadow_agreement",
                   judge="figure" if step.min_agreement is None else "absolute", unit="ratio",
                   minimum=step.min_agreement),
    ]
    return (*found, *(spec for spec in specs if spec.provider != "prometheus"))
