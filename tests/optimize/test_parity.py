"""Parity conditions as pure functions: every condition passes and fails."""

from __future__ import annotations

import numpy as np
import pytest

from shipml.optimize import _parity

THRESHOLDS = {"min_label_agreement": 0.99, "max_metric_delta": 0.01, "max_abs_error": 0.5,
              "max_rel_error": 0.01, "min_cosine": 0.99, "severity": "fail"}


def test_label_agreement_and_accuracy_delta() -> None:
    truth = np.array([0, 1] * 50)
    original = _parity.Answers(labels=truth.copy())
    close = _parity.Answers(labels=truth.copy())
    figures = _parity.measure(original, close, truth)
    assert figures["label_agreement"] == 1.0 and figures["metric_delta"] == 0.0
    assert all(c.status == "pass" for c in _parity.judge("fp16", figures, THRESHOLDS, 100))
    flipped = truth.copy()
    flipped[:5] = 1 - flipped[:5]
    figures = _parity.measure(original, _parity.Answers(labels=flipped), truth)
    agreement, delta = _parity.judge("fp16", figures, THRESHOLDS, 100)
    assert agreement.name == "fp16 agrees with the original on at least 99% of labels"
    assert (agreement.status, agreement.observed) == ("fail", 0.95)
    assert delta.name == "fp16 keeps accuracy within 0.01 of the original"
    assert (delta.status, delta.observed) == ("fail", 0.05)


def test_regression_errors() -> None:
    original = _parity.Answers(values=np.array([100.0, 200.0, -50.0]))
    near = _parity.Answers(values=np.array([100.1, 200.2, -50.05]))
    far = _parity.Answers(values=np.array([103.0, 200.0, -50.0]))
    passing = _parity.judge("graph", _parity.measure(original, near, None), THRESHOLDS, 3)
    assert [c.status for c in passing] == ["pass", "pass"]
    failing = _parity.judge("graph", _parity.measure(original, far, None), THRESHOLDS, 3)
    assert [c.name for c in failing] == [
        "graph stays within 0.5 absolute error of the original",
        "graph stays within 1% relative error of the original",
    ]
    assert [c.status for c in failing] == ["fail", "fail"]
    assert failing[0].observed == pytest.approx(3.0)
    assert failing[1].observed == pytest.approx(0.03)


def test_cosine_similarity_and_warn_severity() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((16, 32))
    original = _parity.Answers(vectors=vectors)
    scaled = _parity.Answers(vectors=vectors * 3.0)  # same direction: cosine 1
    (check,) = _parity.judge("dynamic_int8", _parity.measure(original, scaled, None),
                             THRESHOLDS, 16)
    assert check.status == "pass" and check.observed == pytest.approx(1.0)
    noisy = _parity.Answers(vectors=vectors + rng.standard_normal((16, 32)))
    (check,) = _parity.judge("dynamic_int8", _parity.measure(original, noisy, None),
                             {**THRESHOLDS, "severity": "warn"}, 16)
    assert check.name == "dynamic_int8 keeps cosine similarity to the original at or above 0.99"
    assert check.status == "warn" and check.observed < 0.9
