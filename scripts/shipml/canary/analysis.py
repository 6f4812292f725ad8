"""One analysis round: every configured metric measured for canary and stable on the same window
by its provider, then judged (absolute, relative or Mann-Whitney U).

Measuring goes through the providers; judging is the pure functions of :mod:`shipml.canary.judges`.
No data is never good news: a provider that does not answer, or a window in which the canary
served fewer than ``min_requests`` requests, makes its metrics inconclusive, and the engine then
does not move forward.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from shipml.canary import judges
from shipml.canary.engine import Verdicts
from shipml.canary.judges import MetricResult
from shipml.canary.providers import Explains, MetricProvider, PairedSource, check_type
from shipml.errors import ConfigError, did_you_mean

Judge = Literal["absolute", "relative", "mann-whitney", "paired", "figure"]
#: the judges a metric of ``canary.metrics`` may name (``paired``, the quality judge, comes from
#: ``canary.quality``; ``figure``, agreement without a threshold, from ``canary.probe``)
JUDGES: tuple[Judge, ...] = ("absolute", "relative", "mann-whitney")


@dataclass(frozen=True)
class MetricSpec:
    """One metric of ``canary.metrics``: its source, query and judge with thresholds."""

    name: str
    provider: str
    query: str
    judge: Judge
    maximum: float | None = None
    minimum: float | None = None
    max_ratio: float | None = None
    min_ratio: float | None = None
    slack: float = 0.0
    alpha: float = 0.05
    min_samples: int = 4
    min_effect: float = 0.0
    unit: str = ""
    #: paired: the largest drop of quality that passes, at ``confidence``, over ``looks`` analyses
    max_drop: float = 0.01
    confidence: float = 0.95
    looks: int = 1
    #: paired: ``model.task`` (auto: as the binding infers it)
    task: str = "auto"


def metric_specs(raw: Sequence[Mapping[str, Any]], where: str) -> tuple[MetricSpec, ...]:
    """Return the metric specs of ``canary.metrics``; raise ConfigError for an unknown provider
    or judge, a judge without its threshold, or a repeated name."""
    from shipml.canary.providers.prometheus import UNITS

    specs: list[MetricSpec] = []
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        provider = check_type(str(item.get("provider", "prometheus")), f"{here}.provider")
        judge = str(item.get("judge", "absolute"))
        if judge not in JUDGES:
            raise ConfigError(f"{here}.judge: unknown judge {judge!r}; valid: {', '.join(JUDGES)}"
                              f"{did_you_mean(judge, JUDGES)}")
        query = str(item["query"])
        name = str(item.get("name") or query)
        if judge == "absolute" and item.get("max") is None and item.get("min") is None:
            raise ConfigError(f"{here}: an absolute judge needs max or min, e.g. "
                              f"{{name: {name}, query: {query}, max: 0.01}}")
        if judge == "relative" and item.get("max_ratio") is None \
                and item.get("min_ratio") is None:
            raise ConfigError(f"{here}: a relative judge needs max_ratio or min_ratio, e.g. "
                              f"{{name: {name}, query: {query}, judge: relative, max_ratio: 1.2}}")
        if any(spec.name == name for spec in specs):
            raise ConfigError(f"{here}.name: {name!r} names two metrics; give each its own name")
        unit = str(item.get("unit") or UNITS.get(query, "ms" if query == "latency_ms" else ""))
        specs.append(MetricSpec(
            name=name, provider=provider, query=query, judge=judge,
            maximum=_float(item.get("max")), minimum=_float(item.get("min")),
            max_ratio=_float(item.get("max_ratio")), min_ratio=_float(item.get("min_ratio")),
            slack=float(item.get("slack") or 0.0), alpha=float(item.get("alpha", 0.05)),
            min_samples=int(item.get("min_samples", 4)),
            min_effect=float(item.get("min_effect") or 0.0), unit=unit))
    return tuple(specs)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class AnalysisRound:
    """What one round measured and concluded, and how long it took."""

    results: tuple[MetricResult, ...]
    canary_requests: float | None
    seconds: float
    note: str = ""

    @property
    def verdict(self) -> Literal["pass", "fail", "inconclusive"]:
        """Return ``fail`` if any metric failed, else ``inconclusive`` if any had no verdict
        (or there were no metrics), else ``pass``."""
        verdicts = {result.verdict for result in self.results}
        if "fail" in verdicts:
            return "fail"
        if "inconclusive" in verdicts or not verdicts:
            return "inconclusive"
        return "pass"

    def canary_value(self, query_name: str) -> float | None:
        """Return the canary's value of the first metric named ``query_name``."""
        return next((result.canary for result in self.results if result.name == query_name),
                    None)

    def verdicts(self, specs: Sequence[MetricSpec]) -> Verdicts:
        """Return the round as the engine takes it, with the error rate and p95 it records."""
        def figure(query: str) -> float | None:
            for spec, result in zip(specs, self.results, strict=False):
                if spec.query == query and result.canary is not None:
                    return result.canary
            return None

        missing = [result.name for result in self.results if result.missing]
        return Verdicts(self.verdict, self.results, figure("error_rate"), figure("p95_ms"),
                        self.note, missing=bool(missing) or not self.results)


#: why a round had too little data: the canary's requests in its window
STARVED = ("the canary served {requests:.0f} requests in the last {window:g}s; "
           "canary.min_requests is {min_requests}")
#: added to the round's note when the canary served none: nothing to judge without live traffic
NO_TRAFFIC = "; send traffic to {target}; the analysis judges live requests"


def analyse(specs: Sequence[MetricSpec], providers: Mapping[str, MetricProvider], *,
            canary: str, stable: str, window_s: float, sample_window_s: float,
            min_requests: int, traffic_to: str = "the service") -> AnalysisRound:
    """Measure and judge every metric once; return the round. Only ConfigError (a query
    Prometheus refuses) escapes: any missing value is an inconclusive result. A window without
    a single canary request says, in the round's note, to send traffic to ``traffic_to``."""
    started = time.perf_counter()
    offline: dict[str, str] = {}
    for kind in {spec.provider for spec in specs}:
        provider = providers[kind]
        if not provider.is_online():
            offline[kind] = f"{provider.describe()} is not answering"
    requests_seen: float | None = None
    starved = ""
    counter = "prometheus" if "prometheus" in providers else next(iter(providers), None)
    if counter is not None and counter not in offline:
        requests_seen = providers[counter].query("requests", canary, window_s)
        if requests_seen is None or requests_seen < min_requests:
            starved = STARVED.format(requests=requests_seen or 0, window=window_s,
                                     min_requests=min_requests)
    # A window with some requests, fewer than min_requests, is thin; one without any is missing.
    thin = bool(starved) and bool(requests_seen)
    results = []
    for spec in specs:
        why = offline.get(spec.provider) or (starved if spec.provider == counter else "")
        result = _judge(spec, providers[spec.provider], why, canary=canary, stable=stable,
                        window_s=window_s, sample_window_s=sample_window_s)
        if thin and why == starved:
            result = replace(result, missing=False)
        results.append(result)
    note = starved + (NO_TRAFFIC.format(target=traffic_to) if starved and not requests_seen
                      else "")
    return AnalysisRound(tuple(results), requests_seen, time.perf_counter() - started,
                         note=note)


def _judge(spec: MetricSpec, provider: MetricProvider, why: str, *, canary: str, stable: str,
           window_s: float, sample_window_s: float) -> MetricResult:
    if spec.judge == "paired":
        return _paired(spec, provider, why, canary=canary, stable=stable)
    if spec.judge == "figure":
        value = None if why else provider.query(spec.query, canary, window_s)
        return judges.figure(spec.name, value, unit=spec.unit,
                             why_missing=why or _why_none(provider, canary, stable))
    if spec.judge == "mann-whitney":
        if why:
            return judges.mann_whitney(spec.name, None, None, alpha=spec.alpha,
                                       min_samples=spec.min_samples, unit=spec.unit,
                                       why_missing=why)
        return judges.mann_whitney(
            spec.name, provider.samples(spec.query, canary, sample_window_s),
            provider.samples(spec.query, stable, sample_window_s), alpha=spec.alpha,
            min_samples=spec.min_samples, min_effect=spec.min_effect, unit=spec.unit)
    value = None if why else provider.query(spec.query, canary, window_s)
    if spec.judge == "relative":
        base = None if why else provider.query(spec.query, stable, window_s)
        if not why and (value is None or base is None):
            why = _why_none(provider, canary, stable)
        return judges.relative(spec.name, value, base, max_ratio=spec.max_ratio,
                               min_ratio=spec.min_ratio, slack=spec.slack, unit=spec.unit,
                               why_missing=why)
    if not why and value is None:
        why = _why_none(provider, canary, stable)
    return judges.absolute(spec.name, value, maximum=spec.maximum, minimum=spec.minimum,
                           unit=spec.unit, why_missing=why)


def _paired(spec: MetricSpec, provider: MetricProvider, why: str, *, canary: str,
            stable: str) -> MetricResult:
    outcomes = None
    if not why and isinstance(provider, PairedSource):
        try:
            outcomes = provider.outcomes(canary, stable, spec.task)
        except ConfigError as error:
            why = str(error)
    if outcomes is None and not why:
        why = _why_none(provider, canary, stable)
    return judges.paired_quality(spec.name, outcomes, max_drop=spec.max_drop,
                                 confidence=spec.confidence, looks=spec.looks, why_missing=why)


def _why_none(provider: MetricProvider, canary: str, stable: str) -> str:
    """Return why a source that answers gave no value, in its own words (the server's 4xx
    message to the probe's rows), canary first; empty when it cannot say."""
    if not isinstance(provider, Explains):
        return ""
    return provider.why_none(canary) or provider.why_none(stable)
