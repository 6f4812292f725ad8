"""The judges: pure functions that turn measured values into a verdict with the threshold in its
sentence. Absolute (canary error rate at most 1%), relative (canary p95 at most stable p95 × 1.2)
and statistical (Mann-Whitney U over per-interval samples, one-sided: is the canary slower?).

No value is not a pass: a missing canary or stable value is ``inconclusive``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class MetricResult:
    """One metric judged in one analysis round: the sentence that names the condition with its
    threshold, the verdict, the canary's and stable's values and what was compared."""

    name: str
    sentence: str
    verdict: Verdict
    canary: float | None = None
    stable: float | None = None
    threshold: float | None = None
    detail: str = ""
    unit: str = ""
    #: no value at all (a source that did not answer, no series): never counted as a pass, under
    #: any ``inconclusive`` policy; False for a thin window (too few requests or samples)
    missing: bool = False
    #: further figures of the judgement, by name (the quality judge's interval, discordant pairs
    #: and p-value): recorded per step in the result and shown in the report
    figures: Mapping[str, float | int | None] = field(default_factory=dict)

    def describe(self) -> str:
        """Return the log fragment of this result: name, value, threshold, verdict."""
        shown = _fmt(self.canary, self.unit)
        return f"{self.name}={shown} ({self.detail}) {self.verdict}"


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "none"
    text = f"{value:.4g}"
    return f"{text} {unit}".rstrip() if unit and unit != "ratio" else text


def absolute(name: str, value: float | None, *, maximum: float | None = None,
             minimum: float | None = None, unit: str = "", why_missing: str = "") -> MetricResult:
    """Judge ``value`` against fixed bounds; return ``inconclusive`` when there is no value."""
    bounds = []
    if maximum is not None:
        bounds.append(f"at most {_fmt(maximum, unit)}")
    if minimum is not None:
        bounds.append(f"at least {_fmt(minimum, unit)}")
    sentence = f"canary {name} is {' and '.join(bounds) or 'measured'}"
    threshold = maximum if maximum is not None else minimum
    if value is None or not math.isfinite(value):
        return MetricResult(name, sentence, "inconclusive", None, None, threshold,
                            f"no data{': ' + why_missing if why_missing else ''}", unit,
                            missing=True)
    failed = (maximum is not None and value > maximum) or (minimum is not None and value < minimum)
    parts = []
    if maximum is not None:
        parts.append(f"{_fmt(value, unit)} {'>' if value > maximum else '≤'} {_fmt(maximum, unit)}")
    if minimum is not None:
        parts.append(f"{_fmt(value, unit)} {'<' if value < minimum else '≥'} {_fmt(minimum, unit)}")
    return MetricResult(name, sentence, "fail" if failed else "pass", value, None, threshold,
                        "; ".join(parts) or _fmt(value, unit), unit)


def relative(name: str, canary: float | None, stable: float | None, *,
             max_ratio: float | None = None, min_ratio: float | None = None,
             slack: float = 0.0, unit: str = "", why_missing: str = "") -> MetricResult:
    """Judge the canary's value against the stable's scaled by ``max_ratio`` (and/or
    ``min_ratio``), with an absolute ``slack`` so that two tiny values never fail on noise."""
    bounds = []
    if max_ratio is not None:
        bounds.append(f"at most stable × {max_ratio:g}")
    if min_ratio is not None:
        bounds.append(f"at least stable × {min_ratio:g}")
    sentence = f"canary {name} is {' and '.join(bounds)}"
    if canary is None or stable is None or not (math.isfinite(canary) and math.isfinite(stable)):
        missing = "canary" if canary is None or not math.isfinite(canary) else "stable"
        return MetricResult(name, sentence, "inconclusive", canary, stable, None,
                            f"no {missing} data{': ' + why_missing if why_missing else ''}", unit,
                            missing=True)
    failed, parts, threshold = False, [], None
    if max_ratio is not None:
        threshold = stable * max_ratio + slack
        failed |= canary > threshold
        parts.append(f"{_fmt(canary, unit)} {'>' if canary > threshold else '≤'} "
                     f"{_fmt(threshold, unit)} (stable {_fmt(stable, unit)} × {max_ratio:g})")
    if min_ratio is not None:
        low = stable * min_ratio - slack
        threshold = low if threshold is None else threshold
        failed |= canary < low
        parts.append(f"{_fmt(canary, unit)} {'<' if canary < low else '≥'} {_fmt(low, unit)} "
                     f"(stable {_fmt(stable, unit)} × {min_ratio:g})")
    return MetricResult(name, sentence, "fail" if failed else "pass", canary, stable, threshold,
                        "; ".join(parts), unit)


def mann_whitney_u(first: Sequence[float], second: Sequence[float]) -> tuple[float, float]:
    """Return Mann-Whitney's U of ``first`` and the one-sided p-value that ``first`` tends to be
    larger than ``second`` (normal approximation with tie and continuity correction; exact
    enumeration when both samples are small and tie-free).

    Raises ValueError when either sample is empty.
    """
    n1, n2 = len(first), len(second)
    if not n1 or not n2:
        raise ValueError("Mann-Whitney U needs two non-empty samples")
    pooled = sorted([(value, 0) for value in first] + [(value, 1) for value in second])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    start = 0
    while start < len(pooled):
        end = start
        while end + 1 < len(pooled) and pooled[end + 1][0] == pooled[start][0]:
            end += 1
        rank = (start + end) / 2 + 1
        for index in range(start, end + 1):
            ranks[index] = rank
        size = end - start + 1
        ties += size ** 3 - size
        start = end + 1
    rank_sum = sum(rank for rank, (_, group) in zip(ranks, pooled, strict=True) if group == 0)
    u_first = rank_sum - n1 * (n1 + 1) / 2
    if ties == 0 and n1 + n2 <= 20:
        return u_first, _exact_greater(u_first, n1, n2)
    mean = n1 * n2 / 2
    total = n1 + n2
    variance = n1 * n2 / 12 * ((total + 1) - ties / (total * (total - 1)))
    if variance <= 0:
        return u_first, 1.0 if u_first <= mean else 0.0
    z = (u_first - mean - 0.5) / math.sqrt(variance)
    return u_first, 0.5 * math.erfc(z / math.sqrt(2))


def _exact_greater(u_value: float, n1: int, n2: int) -> float:
    # count(u, a, b): arrangements of a and b values whose U equals u (the classic recurrence)
    from functools import cache

    @cache
    def count(u: int, a: int, b: int) -> int:
        if u < 0 or u > a * b:
            return 0
        if a == 0 or b == 0:
            return 1 if u == 0 else 0
        return count(u - b, a - 1, b) + count(u, a, b - 1)

    total = math.comb(n1 + n2, n1)
    at_least = sum(count(u, n1, n2) for u in range(math.ceil(u_value), n1 * n2 + 1))
    return at_least / total


def mann_whitney(name: str, canary: Sequence[float] | None, stable: Sequence[float] | None, *,
                 alpha: float, min_samples: int, min_effect: float = 0.0, unit: str = "",
                 why_missing: str = "") -> MetricResult:
    """Fail when the canary's samples are larger than the stable's with one-sided p < ``alpha``
    and the medians differ by more than ``min_effect``; inconclusive below ``min_samples`` each."""
    sentence = (f"canary {name} is not larger than stable's (Mann-Whitney U, one-sided "
                f"p ≥ {alpha:g} or a median difference ≤ {_fmt(min_effect, unit)})")
    have = (len(canary or ()), len(stable or ()))
    # Too few samples can never reach p < alpha: such a test would pass anything.
    reachable = min(have) > 0 and 1 / math.comb(sum(have), have[0]) < alpha
    if why_missing or canary is None or stable is None or min(have) < min_samples \
            or not reachable:
        detail = (f"{have[0]} canary and {have[1]} stable samples; at least {min_samples} each "
                  f"that can reach p < {alpha:g} are needed")
        if why_missing:
            detail = f"no data: {why_missing}"
        return MetricResult(name, sentence, "inconclusive", None, None, alpha, detail, unit,
                            missing=bool(why_missing) or min(have) == 0)
    _, p_value = mann_whitney_u(canary, stable)
    effect = _median(canary) - _median(stable)
    slower = p_value < alpha and effect > min_effect
    detail = (f"p={p_value:.3g} {'<' if p_value < alpha else '≥'} {alpha:g}, median "
              f"{_fmt(_median(canary), unit)} vs stable {_fmt(_median(stable), unit)} "
              f"(n={have[0]}/{have[1]})")
    return MetricResult(name, sentence, "fail" if slower else "pass", _median(canary),
                        _median(stable), alpha, detail, unit)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class PairedOutcomes:
    """The rollout's paired record against the labels: per paired row, whether each revision
    answered correctly (1.0 or 0.0, classification) or its absolute error (regression);
    ``complete`` once every test row is paired; ``agreement`` the share of paired rows whose
    predictions match."""

    task: Task
    canary: tuple[float, ...]
    stable: tuple[float, ...]
    complete: bool
    agreement: float | None


def paired_quality(name: str, outcomes: PairedOutcomes | None, *, max_drop: float,
                   confidence: float, looks: int, why_missing: str = "") -> MetricResult:
    """Judge the canary's quality against the stable's on the same labelled rows with
    :mod:`shipml.paired` (exact McNemar for classifiers, Wilcoxon signed-rank for regressors):
    ``fail`` when it is worse by more than ``max_drop`` at ``confidence`` (split over ``looks``),
    ``inconclusive`` while too few rows differ to decide, else ``pass``. The judgement's figures
    (values, interval, drop, discordant pairs, p-value, agreement) go into ``figures``."""
    from shipml.paired import alpha_of, judge_classification, judge_regression

    alpha = alpha_of(confidence, max(1, looks))
    if outcomes is None or not outcomes.canary:
        sentence = (f"canary quality against the labels is at most {max_drop:g} below stable's "
                    f"(paired, {confidence:.0%} confidence)")
        return MetricResult(name, sentence, "inconclusive", None, None, max_drop,
                            f"no canary data: {why_missing or 'no labelled pairs yet'}",
                            missing=True)
    if outcomes.task == "classification":
        judgement = judge_classification([bool(value) for value in outcomes.canary],
                                         [bool(value) for value in outcomes.stable],
                                         max_drop=max_drop, alpha=alpha, confidence=confidence,
                                         complete=outcomes.complete)
        counted = "discordant"
    else:
        judgement = judge_regression(outcomes.canary, outcomes.stable, max_drop=max_drop,
                                     alpha=alpha, confidence=confidence,
                                     complete=outcomes.complete)
        counted = "informative"
    accuracy = outcomes.task == "classification"
    bound = (f"{_drop(max_drop, accuracy)} below" if accuracy
             else f"{_drop(max_drop, accuracy)} above")
    sentence = (f"canary {judgement.metric} is at most {bound} stable's (paired, "
                f"{confidence:.0%} confidence)")
    shown = f"stable {_fmt(judgement.baseline)}"
    if judgement.low is not None and judgement.high is not None:
        low, high = judgement.low * 100, judgement.high * 100
        shown += (f", drop in [{low:.3g}, {high:.3g}] points" if accuracy
                  else f", drop in [{low:.3g}%, {high:.3g}%]")
    agreement = "" if outcomes.agreement is None else f"; agreement {outcomes.agreement:.4g}"
    figures: dict[str, float | int | None] = {
        "canary": judgement.candidate, "stable": judgement.baseline, "drop": judgement.drop,
        "low": judgement.low, "high": judgement.high, counted: judgement.informative,
        "pairs": judgement.pairs, "p_value": judgement.p_value, "alpha": judgement.alpha,
        "agreement": outcomes.agreement}
    return MetricResult(name, sentence, judgement.verdict, judgement.candidate,
                        judgement.baseline, max_drop,
                        f"{judgement.metric}, {shown}; {judgement.detail}{agreement}",
                        figures=figures)


def _drop(value: float, accuracy: bool) -> str:
    """Return a drop as people say it: accuracy points (``1.5 points``), else a percentage."""
    if not math.isfinite(value):
        return "∞"
    if accuracy:
        points = round(value * 100, 2)
        return f"{points:g} point{'' if abs(points) == 1 else 's'}"
    return f"{value * 100:.3g}%"


def figure(name: str, value: float | None, *, unit: str = "", why_missing: str = ""
           ) -> MetricResult:
    """Report ``value`` without a threshold: ``pass`` with a value, ``inconclusive`` (no data)
    without one."""
    sentence = f"canary {name} is measured (a figure, no threshold)"
    if value is None or not math.isfinite(value):
        return MetricResult(name, sentence, "inconclusive", None, None, None,
                            f"no canary data{': ' + why_missing if why_missing else ''}", unit,
                            missing=True)
    return MetricResult(name, sentence, "pass", value, None, None, "a figure, no threshold",
                        unit)
