"""Is this model better? The candidate against a baseline model (the base branch's, by git ref)
on the same ``model.test`` rows, with the paired judge the canary uses (:mod:`shipml.paired`).

validate judges once, over the whole test set: one look, and never inconclusive. The metric is
the task's: accuracy for a classifier, mean absolute error for a regressor (the task is the one
the binding of the candidate inferred or ``model.task`` declared).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipml.baseline import resolve_baseline
from shipml.config import Config
from shipml.data import Task
from shipml.errors import ConfigError
from shipml.paired import PairedJudgement, alpha_of, judge_classification, judge_regression
from shipml.results import Check, CheckStatus, Delta
from shipml.validate._inputs import ModelInputs, bind, open_model, predict_table

log = logging.getLogger("shipml.validate")

CANNOT_READ_TEST = (
    "{where}: the baseline model {source} cannot answer model.test as the candidate does: "
    "{reason}\nThe baseline must read the same columns (model.features, else train's header); "
    "point {section}.baseline at a model trained for this data, or remove it"
)
NO_LABELS = "{where}: model.test has no labelled rows to compare the candidate with its baseline"


@dataclass(frozen=True)
class BaselineComparison:
    """The candidate's quality against its baseline's on the test rows, and where it came from."""

    #: the baseline, e.g. ``origin/main:models/model.onnx`` or a file path
    source: str
    #: the key that named it: ``validate.baseline`` or ``latency.baseline``
    key: str
    judgement: PairedJudgement
    confidence: float

    def check(self) -> Check:
        """Return the gate's record: fail when the candidate is worse by more than max_drop."""
        judgement = self.judgement
        name = (f"{judgement.metric} is at most {_amount(judgement.max_drop, judgement.metric)} "
                f"worse than the baseline's ({self.source}) at {_percent(self.confidence)} "
                f"confidence")
        status: CheckStatus = "fail" if judgement.verdict == "fail" else "pass"
        return Check(name=name, status=status, observed=comparison_line(judgement,
                                                                        self.confidence),
                     threshold=f"≤ {_amount(judgement.max_drop, judgement.metric)} worse",
                     detail=judgement.detail, group="baseline")

    def delta(self) -> Delta | None:
        """Return the figure for the report's baseline table: the metric of both, the interval
        of their ratio and the comparison in words; None without figures."""
        judgement = self.judgement
        if judgement.candidate is None or judgement.baseline is None or judgement.low is None \
                or judgement.high is None or not judgement.baseline:
            return None
        accuracy = judgement.metric == "accuracy"
        # candidate/baseline from the drop's interval: accuracy loses points of the baseline's
        # value, a regressor's error grows by a share of it.
        if accuracy:
            ratio = (1 - judgement.high / judgement.baseline, 1 - judgement.low / judgement.baseline)
        else:
            ratio = (1 + judgement.low, 1 + judgement.high)
        # the figures as the comparison line shows them: one figure, one rounding
        digits = 3 if accuracy else 4
        return Delta(name=f"{judgement.metric} against {self.source}",
                     baseline=_rounded(judgement.baseline, digits),
                     candidate=_rounded(judgement.candidate, digits),
                     higher_is_better=accuracy, interval=(round(ratio[0], 6), round(ratio[1], 6)),
                     note=comparison_line(judgement, self.confidence, figures=False))

    def to_metrics(self) -> dict[str, Any]:
        """Return the figures for the stage result's ``metrics.baseline``."""
        return {"source": self.source, "key": self.key, "confidence": self.confidence,
                **self.judgement.to_dict()}


def baseline_section(config: Config) -> str | None:
    """Return the section whose ``baseline`` names the model to judge against: ``validate``
    when it names one, else ``latency`` when it does and ``validate.baseline.from_latency`` is
    on; None when there is none."""
    own = config.section("validate")["baseline"]
    if own.get("path") or own.get("git_ref"):
        return "validate"
    latency = config.section("latency").get("baseline") or {}
    if own.get("from_latency", True) and (latency.get("path") or latency.get("git_ref")):
        return "latency"
    return None


def compare_with_baseline(config: Config, inputs: ModelInputs, batch_size: int
                          ) -> BaselineComparison | None:
    """Return the candidate's quality against the configured baseline's on ``model.test``, or
    None when no baseline is configured or it is the candidate's own file.

    Raises ConfigError for a baseline that cannot be read (file, ref, git) or cannot answer the
    test rows, and for a test set without labels.
    """
    section = baseline_section(config)
    if section is None:
        return None
    settings = config.section("validate")["baseline"]
    max_drop, confidence = float(settings["max_drop"]), float(settings["confidence"])
    where = config.where(section, "baseline")
    with tempfile.TemporaryDirectory(prefix="shipml-baseline-") as scratch:
        found = resolve_baseline(config, section, inputs.model.path, Path(scratch))
        if found is None:  # baseline_section said it names one
            return None
        path, source = found
        if path.resolve() == inputs.model.path.resolve():
            # latency's baseline may be model.path itself (latency then times optimize's output
            # against it): a model against itself says nothing of its quality.
            log.info("validate: %s.baseline is model.path itself (%s): no comparison", section,
                     source)
            return None
        try:
            model = open_model(config, path, where, batch_size)
            binding = bind(config, model, inputs.train)
            answers = predict_table(model, inputs.test, binding.features).labels
        except ConfigError as exc:
            raise ConfigError(CANNOT_READ_TEST.format(where=where, source=source, reason=exc,
                                                      section=section)) from None
    truth = inputs.test.frame[inputs.label].to_numpy()
    judgement = judge(inputs.task, truth, inputs.test_predictions.labels, answers,
                      max_drop=max_drop, confidence=confidence)
    if judgement.pairs == 0:
        raise ConfigError(NO_LABELS.format(where=config.where("model", "test")))
    comparison = BaselineComparison(source=source, key=f"{section}.baseline",
                                    judgement=judgement, confidence=confidence)
    log.info("validate: against %s: %s — %s", source, judgement.verdict.upper(),
             comparison_line(judgement, confidence))
    return comparison


def judge(task: Task, truth: Sequence[Any] | np.ndarray[Any, Any],
          candidate: Sequence[Any] | np.ndarray[Any, Any],
          baseline: Sequence[Any] | np.ndarray[Any, Any], *, max_drop: float,
          confidence: float) -> PairedJudgement:
    """Return the paired judgement of the candidate's answers against the baseline's on the rows
    whose label is known: which rows each classified correctly, or each regressor's absolute
    error. One look at the whole test set (never inconclusive).

    Raises ValueError when the three differ in length.
    """
    truth_values = np.asarray(truth)
    mine, theirs = np.asarray(candidate), np.asarray(baseline)
    if not len(truth_values) == len(mine) == len(theirs):
        raise ValueError("truth, candidate and baseline answers must be one per row")
    known = ~pd.isna(truth_values)
    truth_values, mine, theirs = truth_values[known], mine[known], theirs[known]
    alpha = alpha_of(confidence, 1)
    if task == "regression":
        target = truth_values.astype(float)
        return judge_regression(np.abs(mine.astype(float) - target).tolist(),
                                np.abs(theirs.astype(float) - target).tolist(),
                                max_drop=max_drop, alpha=alpha, confidence=confidence,
                                complete=True)
    return judge_classification((mine == truth_values).tolist(), (theirs == truth_values).tolist(),
                                max_drop=max_drop, alpha=alpha, confidence=confidence,
                                complete=True, names=("candidate", "baseline"))


def comparison_line(judgement: PairedJudgement, confidence: float, *,
                    figures: bool = True) -> str:
    """Return the comparison in words, e.g. ``accuracy 0.912 vs base 0.941: 2.9 points worse
    [1.8, 4.0] at 95%, 61 discordant pairs (p=0.0003)``; without ``figures`` the part after the
    colon."""
    if judgement.candidate is None or judgement.baseline is None or judgement.drop is None:
        return judgement.detail
    accuracy = judgement.metric == "accuracy"
    digits = ".3f" if accuracy else ".4g"  # as _rounded in the delta
    head = f"{judgement.metric} {judgement.candidate:{digits}} vs base " \
           f"{judgement.baseline:{digits}}"
    drop, low, high = judgement.drop, judgement.low, judgement.high
    if drop > 0:
        change = f"{_amount(drop, judgement.metric)} worse"
        bounds = (low, high)
    elif drop < 0:
        change = f"{_amount(-drop, judgement.metric)} better"
        bounds = (-high if high is not None else None, -low if low is not None else None)
    else:
        change = "no different"
        bounds = (low, high)
    lower, upper = bounds
    if lower is not None and upper is not None and math.isfinite(lower) and math.isfinite(upper):
        change += f" [{lower * 100:.1f}, {upper * 100:.1f}]"
    change += f" at {_percent(confidence)}"
    pairs = (f"{judgement.informative} discordant pairs" if accuracy else
             f"{judgement.informative} of {judgement.pairs} rows with different errors")
    p_value = f" (p={judgement.p_value:.2g})" if judgement.p_value is not None else ""
    tail = f"{change}, {pairs}{p_value}"
    return f"{head}: {tail}" if figures else tail


def _amount(value: float, metric: str) -> str:
    if math.isinf(value):
        return "∞"
    if metric == "accuracy":
        points = value * 100
        shown = f"{points:.1f}".removesuffix(".0")
        return f"{shown} point" + ("" if shown == "1" else "s")
    return f"{value * 100:.3g}%"


def _rounded(value: float, digits: int) -> float:
    """Return ``value`` as the line shows it: 3 decimals (accuracy) or 4 significant digits."""
    return round(value, 3) if digits == 3 else float(f"{value:.4g}")


def _percent(confidence: float) -> str:
    return f"{confidence * 100:.4g}%"
