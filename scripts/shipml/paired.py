"""The paired quality judge: is a candidate model worse than a baseline on the same labelled rows?

Both models answer the same rows, so the comparison is paired, and only the rows on which they
differ carry information:

- classifiers: which rows each answered correctly. The rows where exactly one of them is right
  (the *discordant* pairs) decide, with an exact McNemar test (a binomial test of those pairs at
  one half);
- regressors: the paired absolute errors, with a Wilcoxon signed-rank test of their differences
  (exact below 26 non-zero differences without ties, else the normal approximation with tie and
  continuity correction).

The verdict is ``fail`` when the candidate is worse with one-sided p below ``alpha`` *and* by more
than ``max_drop`` (accuracy points for a classifier, the relative increase of the mean absolute
error for a regressor); ``inconclusive`` while too few informative pairs exist for the test ever to
reach ``alpha`` and the rows seen cannot rule out a drop larger than ``max_drop`` (unless they
are the whole test set: more rows would not tell more); ``pass`` otherwise.

The canary judges after every analysis (``looks`` splits ``alpha`` among them, so that repeated
looks at a growing record keep the false-alarm rate at ``1 - confidence``); validate judges once.

Pure functions over plain sequences: no I/O, no numpy, no scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Verdict = Literal["pass", "fail", "inconclusive"]
#: the largest number of non-zero differences whose signed-rank distribution is enumerated
EXACT_WILCOXON_MAX = 25


@dataclass(frozen=True)
class PairedJudgement:
    """The paired comparison of a candidate with a baseline on the same rows.

    ``drop`` is how much worse the candidate is (accuracy points lost; for a regressor the relative
    increase of its mean absolute error), ``low``/``high`` its two-sided interval at the
    configured confidence, ``informative`` the pairs that carry information (discordant rows; for a
    regressor, rows whose errors differ), ``p_value`` the one-sided p that the candidate is worse.
    """

    verdict: Verdict
    metric: str
    candidate: float | None
    baseline: float | None
    drop: float | None
    low: float | None
    high: float | None
    pairs: int
    informative: int
    p_value: float | None
    alpha: float
    max_drop: float
    detail: str

    def to_dict(self) -> dict[str, object]:
        """Return the JSON-ready mapping (the figures a result and a report show)."""
        return {"verdict": self.verdict, "metric": self.metric, "candidate": self.candidate,
                "baseline": self.baseline, "drop": self.drop, "low": self.low,
                "high": self.high, "pairs": self.pairs, "informative": self.informative,
                "p_value": self.p_value, "alpha": self.alpha, "max_drop": self.max_drop,
                "detail": self.detail}


def alpha_of(confidence: float, looks: int = 1) -> float:
    """Return the one-sided level of one look: ``(1 - confidence) / looks`` (Bonferroni over the
    looks, which keeps the chance of any false alarm at ``1 - confidence``).

    Raises ValueError unless ``0 < confidence < 1`` and ``looks >= 1``.
    """
    if not 0 < confidence < 1 or looks < 1:
        raise ValueError(f"confidence must be in (0, 1) and looks ≥ 1, not {confidence}, {looks}")
    return (1 - confidence) / looks


def mcnemar_exact(baseline_only: int, candidate_only: int) -> float:
    """Return the one-sided exact McNemar p-value that the candidate is worse: the chance of at
    least ``baseline_only`` of the discordant pairs going the baseline's way when each goes either
    way with probability one half. 1.0 without discordant pairs."""
    total = baseline_only + candidate_only
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, k) for k in range(baseline_only, total + 1))
    return min(1.0, float(tail / 2 ** total))


def wilcoxon_greater(differences: Sequence[float]) -> tuple[float, int]:
    """Return the one-sided Wilcoxon signed-rank p-value that ``differences`` tend to be positive,
    and how many were non-zero (zeros are dropped). 1.0 when none is non-zero."""
    nonzero = [value for value in differences if value != 0]
    count = len(nonzero)
    if count == 0:
        return 1.0, 0
    ordered = sorted(nonzero, key=abs)
    ranks = [0.0] * count
    ties = 0.0
    start = 0
    while start < count:
        end = start
        while end + 1 < count and abs(ordered[end + 1]) == abs(ordered[start]):
            end += 1
        for index in range(start, end + 1):
            ranks[index] = (start + end) / 2 + 1
        size = end - start + 1
        ties += size ** 3 - size
        start = end + 1
    positive = sum(rank for rank, value in zip(ranks, ordered, strict=True) if value > 0)
    if ties == 0 and count <= EXACT_WILCOXON_MAX:
        return _exact_signed_rank(positive, count), count
    mean = count * (count + 1) / 4
    variance = count * (count + 1) * (2 * count + 1) / 24 - ties / 48
    if variance <= 0:
        return (1.0 if positive <= mean else 0.0), count
    z = (positive - mean - 0.5) / math.sqrt(variance)
    return 1 - NormalDist().cdf(z), count


def _exact_signed_rank(positive: float, count: int) -> float:
    # ways[s]: subsets of the ranks 1..count whose sum is s (each sign pattern equally likely)
    top = count * (count + 1) // 2
    ways = [1] + [0] * top
    for rank in range(1, count + 1):
        for total in range(top, rank - 1, -1):
            ways[total] += ways[total - rank]
    at_least = sum(ways[math.ceil(positive):])
    return float(at_least / 2 ** count)


def judge_classification(candidate_correct: Sequence[bool], baseline_correct: Sequence[bool],
                         *, max_drop: float, alpha: float, confidence: float,
                         complete: bool = False,
                         names: tuple[str, str] = ("canary", "stable")) -> PairedJudgement:
    """Judge a classifier from which rows each model answered correctly (same rows, same order).
    ``complete`` says the rows are all there will be (the whole test set): never inconclusive;
    ``names`` are the candidate's and the baseline's in the detail's counts.

    Raises ValueError when the two sequences differ in length.
    """
    if len(candidate_correct) != len(baseline_correct):
        raise ValueError("the paired judge needs one answer of each model per row")
    pairs = len(candidate_correct)
    baseline_only = sum(1 for mine, theirs in zip(candidate_correct, baseline_correct,
                                                   strict=True) if theirs and not mine)
    candidate_only = sum(1 for mine, theirs in zip(candidate_correct, baseline_correct,
                                                    strict=True) if mine and not theirs)
    discordant = baseline_only + candidate_only
    if pairs == 0:
        return _empty("accuracy", alpha, max_drop)
    candidate = sum(map(bool, candidate_correct)) / pairs
    baseline = sum(map(bool, baseline_correct)) / pairs
    drop = (baseline_only - candidate_only) / pairs
    spread = math.sqrt(max(discordant - (baseline_only - candidate_only) ** 2 / pairs, 0.0)) / pairs
    low, high = _interval(drop, spread, confidence)
    p_value = mcnemar_exact(baseline_only, candidate_only)
    counted = f"{discordant} discordant of {pairs} rows ({baseline_only} only {names[1]} " \
              f"right, {candidate_only} only {names[0]} right)"
    # The share of rows on which the two can differ bounds the drop, whatever the test says.
    bound = _upper_share(discordant, pairs, confidence)
    return _decide("accuracy", candidate, baseline, drop, low, high, pairs, discordant, p_value,
                   alpha, max_drop, counted, drop_bound=bound, complete=complete)


def judge_regression(candidate_errors: Sequence[float], baseline_errors: Sequence[float], *,
                     max_drop: float, alpha: float, confidence: float,
                     complete: bool = False) -> PairedJudgement:
    """Judge a regressor from each model's absolute error per row (same rows, same order).
    ``drop`` is the relative increase of the candidate's mean absolute error; ``complete`` says
    the rows are all there will be (the whole test set): never inconclusive.

    Raises ValueError when the two sequences differ in length.
    """
    if len(candidate_errors) != len(baseline_errors):
        raise ValueError("the paired judge needs one answer of each model per row")
    pairs = len(candidate_errors)
    if pairs == 0:
        return _empty("mean absolute error", alpha, max_drop)
    differences = [mine - theirs for mine, theirs in zip(candidate_errors, baseline_errors,
                                                         strict=True)]
    candidate = sum(candidate_errors) / pairs
    baseline = sum(baseline_errors) / pairs
    p_value, nonzero = wilcoxon_greater(differences)
    mean_difference = candidate - baseline
    deviation = _deviation(differences) / math.sqrt(pairs)
    if baseline > 0:
        drop = mean_difference / baseline
        low, high = _interval(drop, deviation / baseline, confidence)
    else:
        drop = 0.0 if candidate == 0 else math.inf
        low = high = drop
    counted = f"{nonzero} of {pairs} rows with different errors"
    return _decide("mean absolute error", candidate, baseline, drop, low, high, pairs, nonzero,
                   p_value, alpha, max_drop, counted,
                   drop_bound=0.0 if nonzero == 0 else math.inf, complete=complete)


def _decide(metric: str, candidate: float, baseline: float, drop: float, low: float,
            high: float, pairs: int, informative: int, p_value: float, alpha: float,
            max_drop: float, counted: str, *, drop_bound: float, complete: bool
            ) -> PairedJudgement:
    worse = p_value < alpha and drop > max_drop
    # Below this many informative pairs even a clean sweep could not reach alpha.
    needed = math.ceil(math.log2(1 / alpha)) + 1 if alpha < 1 else 1
    if worse:
        verdict: Verdict = "fail"
        detail = f"worse by {_points(drop, metric)} > {_points(max_drop, metric)}, " \
                 f"p={p_value:.3g} < {alpha:.3g}; {counted}"
    elif informative < needed and drop_bound > max_drop and not complete:
        verdict = "inconclusive"
        detail = f"too few informative pairs to decide: {counted}; at least {needed} are needed"
    else:
        verdict = "pass"
        relation = "<" if p_value < alpha else "≥"
        detail = f"drop {_points(drop, metric)} (max {_points(max_drop, metric)}), " \
                 f"p={p_value:.3g} {relation} {alpha:.3g}; {counted}"
    return PairedJudgement(verdict, metric, candidate, baseline, drop, low, high, pairs,
                           informative, p_value, alpha, max_drop, detail)


def _empty(metric: str, alpha: float, max_drop: float) -> PairedJudgement:
    return PairedJudgement("inconclusive", metric, None, None, None, None, None, 0, 0, None,
                           alpha, max_drop, "no labelled pairs yet")


def _points(value: float, metric: str) -> str:
    if metric == "accuracy":
        shown = f"{value * 100:.2g}"
        return f"{shown} point" if shown in ("1", "-1") else f"{shown} points"
    return "∞" if math.isinf(value) else f"{value * 100:.3g}%"


def _interval(centre: float, spread: float, confidence: float) -> tuple[float, float]:
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    return centre - z * spread, centre + z * spread


def _deviation(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))


def _upper_share(successes: int, trials: int, level: float) -> float:
    """Return the one-sided upper bound at ``level`` of a binomial share (Clopper-Pearson)."""
    if successes >= trials:
        return 1.0
    if successes == 0:
        return 1 - float((1 - level) ** (1 / trials))
    low, high = successes / trials, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if _binomial_cdf(successes, trials, middle) > 1 - level:
            low = middle
        else:
            high = middle
    return high


def _binomial_cdf(successes: int, trials: int, share: float) -> float:
    # in log space: math.comb(5000, k) is too large for a float
    log_share, log_rest = math.log(share), math.log1p(-share)
    base = math.lgamma(trials + 1)
    return math.fsum(math.exp(base - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
                        + k * log_share + (trials - k) * log_rest)
               for k in range(successes + 1))
