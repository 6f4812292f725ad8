"""Checks spread over worker processes give exactly the result of a serial deepchecks run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shipml.cli import main
from shipml.validate._parallel import _spread, _units, run_suite
from tests.conftest import Case

pytestmark = pytest.mark.deepchecks

SUITES = ["data_integrity", "train_test_validation", "model_evaluation"]


def _validate(case: Case, folder: Path, workers: int) -> dict[str, Any]:
    case.write_config({"suites": SUITES, "html": True, "workers": workers})
    assert main(["validate", "--config", str(case.config), "--output-dir", str(folder)]) == 0
    result: dict[str, Any] = json.loads((folder / "results" / "validate.json").read_text())
    return result


def test_two_workers_give_the_serial_result(binary_case: Case, tmp_path: Path) -> None:
    serial = _validate(binary_case, tmp_path / "serial", workers=1)
    parallel = _validate(binary_case, tmp_path / "parallel", workers=2)
    assert parallel["metrics"]["workers"] == 2
    assert parallel["checks"] == serial["checks"]  # same records, same order
    assert parallel["metrics"]["not_run"] == serial["metrics"]["not_run"]
    assert len(parallel["checks"]) > 20
    # deepchecks' HTML report holds every check's display
    html = (tmp_path / "parallel" / "artifacts" / "validate.html").read_text()
    assert "Weak Segments Performance - Test Dataset" in html
    assert "Feature Drift" in html


def test_units_split_single_dataset_checks_by_dataset_and_heaviest_go_first() -> None:
    from deepchecks.tabular.checks import FeatureDrift, MixedNulls, WeakSegmentsPerformance

    checks = [MixedNulls(), FeatureDrift(), WeakSegmentsPerformance()]
    units = _units(checks, {"train_dataset": object(), "test_dataset": object()})
    assert [(u.check_position, u.mode) for u in units] == [
        (0, "Train"), (0, "Test"), (1, None), (2, "Train"), (2, "Test")]
    shares = _spread(units, 2)
    # the two halves of the heavy check land on different workers
    assert {(share[0].check_position, share[0].mode) for share in shares} == {(2, "Train"), (2, "Test")}
    assert sorted(u.index for share in shares for u in share) == list(range(5))


def test_a_worker_that_dies_has_its_checks_run_in_the_parent(tmp_path: Path) -> None:
    import contextlib

    from deepchecks.core import CheckResult
    from deepchecks.tabular import Dataset, SingleDatasetCheck, Suite

    parent = os.getpid()

    class DiesInWorkers(SingleDatasetCheck):  # type: ignore[misc]
        def run_logic(self, context: Any, dataset_kind: Any) -> CheckResult:
            if os.getpid() != parent:
                os._exit(9)  # a worker killed mid-check (out of memory, a crash in native code)
            rows = len(context.get_data_by_kind(dataset_kind).data)
            return CheckResult(rows)

    frame = pd.DataFrame({"x": range(40), "y": [0, 1] * 20})
    train = Dataset(frame[:30], label="y", cat_features=[])
    test = Dataset(frame[30:], label="y", cat_features=[])
    checks = [DiesInWorkers(), DiesInWorkers()]
    result = run_suite(Suite("s", *checks), {"train_dataset": train, "test_dataset": test,
                                             "with_display": False}, 2, contextlib.nullcontext)
    assert [r.value for r in result.results] == [30, 10, 30, 10]
    assert [r.check for r in result.results] == [checks[0], checks[0], checks[1], checks[1]]
