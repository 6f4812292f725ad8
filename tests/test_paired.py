"""The paired quality judge against scipy's reference tests, and its three verdicts."""

from __future__ import annotations

import random

import pytest
from scipy import stats

from shipml.paired import alpha_of, judge_classification, judge_regression, mcnemar_exact, wilcoxon_greater


@pytest.mark.parametrize(("baseline_only", "candidate_only"), [(0, 0), (9, 1), (50, 20), (3, 7)])
def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_pairs(
        baseline_only: int, candidate_only: int) -> None:
    expected = 1.0 if baseline_only + candidate_only == 0 else stats.binomtest(
        baseline_only, baseline_only + candidate_only, 0.5, alternative="greater").pvalue
    assert mcnemar_exact(baseline_only, candidate_only) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("size", [12, 400])
def test_wilcoxon_matches_scipy(seed: int, size: int) -> None:
    rng = random.Random(seed)
    differences = [round(rng.gauss(0.2, 1.0), 6 if size < 20 else 1) for _ in range(size)]
    differences[0] = 0.0
    p_value, nonzero = wilcoxon_greater(differences)
    method = "exact" if size < 20 else "approx"
    reference = stats.wilcoxon(differences, alternative="greater", zero_method="wilcox",
                               correction=True, method=method).pvalue
    assert nonzero == sum(1 for value in differences if value != 0)
    assert p_value == pytest.approx(reference, rel=1e-6, abs=1e-12)


def _classifier_rows(rng: random.Random, rows: int, baseline: float, candidate: float,
                     differ: float) -> tuple[list[bool], list[bool]]:
    base = [rng.random() < baseline for _ in range(rows)]
    flip_to_wrong = (baseline - candidate + differ) / 2
    cand = []
    for right in base:
        draw = rng.random()
        if right and draw < flip_to_wrong / baseline:
            cand.append(False)
        elif not right and draw < (differ - flip_to_wrong) / (1 - baseline):
            cand.append(True)
        else:
            cand.append(right)
    return cand, base


def test_a_classifier_three_points_worse_fails_and_an_equal_one_passes() -> None:
    rng = random.Random(7)
    alpha = alpha_of(0.95, looks=10)
    worse = judge_classification(*_classifier_rows(rng, 2000, 0.90, 0.87, 0.06), max_drop=0.01,
                                 alpha=alpha, confidence=0.95)
    equal = judge_classification(*_classifier_rows(rng, 2000, 0.90, 0.90, 0.06), max_drop=0.01,
                                 alpha=alpha, confidence=0.95)
    assert worse.verdict == "fail", worse.detail
    assert worse.low is not None and worse.low > 0
    assert equal.verdict == "pass", equal.detail
    assert equal.informative > 50


def test_a_better_classifier_passes() -> None:
    cand, base = _classifier_rows(random.Random(3), 1000, 0.85, 0.90, 0.08)
    judged = judge_classification(cand, base, max_drop=0.0, alpha=0.01, confidence=0.95)
    assert judged.verdict == "pass"
    assert judged.drop is not None and judged.drop < 0


def test_few_discordant_pairs_are_inconclusive_until_the_test_set_is_complete() -> None:
    cand = [True] * 40 + [False] * 2
    base = [True] * 42
    early = judge_classification(cand, base, max_drop=0.01, alpha=0.005, confidence=0.95)
    assert early.verdict == "inconclusive"
    assert "2 discordant of 42 rows" in early.detail
    final = judge_classification(cand, base, max_drop=0.01, alpha=0.005, confidence=0.95,
                                 complete=True)
    assert final.verdict == "pass"


def test_identical_answers_on_enough_rows_pass() -> None:
    judged = judge_classification([True] * 400, [True] * 400, max_drop=0.01, alpha=0.001,
                                  confidence=0.95)
    assert judged.verdict == "pass", judged.detail


def test_a_regressor_with_twenty_percent_more_error_fails() -> None:
    rng = random.Random(5)
    base = [abs(rng.gauss(0, 1)) for _ in range(300)]
    worse = [error * 1.2 + abs(rng.gauss(0, 0.05)) for error in base]
    judged = judge_regression(worse, base, max_drop=0.01, alpha=0.005, confidence=0.95)
    assert judged.verdict == "fail"
    assert judged.drop == pytest.approx(0.2, abs=0.05)
    same = judge_regression(base, base, max_drop=0.01, alpha=0.005, confidence=0.95)
    assert same.verdict == "pass"


def test_a_significant_but_tiny_drop_passes() -> None:
    judged = judge_classification([True] * 9990 + [False] * 10, [True] * 10000, max_drop=0.01,
                                  alpha=0.01, confidence=0.95)
    assert judged.p_value is not None and judged.p_value < 0.01
    assert judged.verdict == "pass"


def test_rows_of_unequal_length_are_refused() -> None:
    with pytest.raises(ValueError):
        judge_classification([True], [], max_drop=0.0, alpha=0.05, confidence=0.95)
    with pytest.raises(ValueError):
        alpha_of(1.0)


def test_one_point_is_said_in_the_singular() -> None:
    judged = judge_classification([True] * 95 + [False] * 5, [True] * 100, max_drop=0.01,
                                  alpha=0.05, confidence=0.95, complete=True)
    assert "worse by 5 points > 1 point," in judged.detail, judged.detail
