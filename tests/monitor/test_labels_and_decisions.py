"""Performance against labels that arrived later, joined by request id; and the alert decision
as a pure function of the issue found and the verdict."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from shipml.cli import main
from shipml.monitor._alert import Decision, decide, issue_marker, reported_state, state_line
from shipml.results import StageResult
from tests.monitor.conftest import LABEL, copy_example, write_config
from tests.monitor.test_bad_input import write_log


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = copy_example(tmp_path / "project")
    test = pd.read_csv(folder / "test.csv")
    write_log(folder / "logs" / "predictions.jsonl", test.drop(columns=[LABEL]),
              folder / "model.onnx")
    return folder


def _labels(project: Path, flip: bool) -> None:
    truth = pd.read_csv(project / "test.csv")[LABEL]
    labels = pd.DataFrame({"request_id": [f"req-{i}" for i in range(len(truth))],
                           LABEL: (1 - truth) if flip else truth})
    labels.iloc[::3].to_csv(project / "labels.csv", index=False)  # a third arrived so far


@pytest.mark.deepchecks
@pytest.mark.parametrize(("flip", "code", "status"), [(False, 0, "pass"), (True, 1, "fail")])
def test_late_labels_are_joined_by_request_id(project: Path, flip: bool, code: int,
                                              status: str) -> None:
    _labels(project, flip)
    write_config(project, {"logs": {"path": "logs"}, "labels": {"path": "labels.csv"},
                           "min_records": 50})
    assert main(["monitor", "--config", str(project / "shipml.yaml"),
                 "--output-dir", str(project / ".shipml")]) == code
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    performance = next(c for c in result.checks if c.group == "performance")
    assert performance.status == status
    assert performance.name.startswith("accuracy on labelled production rows is at most 0.05 "
                                       "below the reference's (")
    assert result.metrics["labelled_rows"] == 57
    assert performance.detail.endswith(f"on 57 rows (reference {performance.name[-7:-1]})")


@pytest.mark.deepchecks
def test_too_few_labels_is_an_error(project: Path) -> None:
    _labels(project, False)
    write_config(project, {"logs": {"path": "logs"}, "labels": {"path": "labels.csv",
                                                                "min_rows": 100}})
    assert main(["monitor", "--config", str(project / "shipml.yaml"),
                 "--output-dir", str(project / ".shipml")]) == 1
    result = StageResult.read(project / ".shipml" / "results" / "monitor.json")
    performance = next(c for c in result.checks if c.group == "performance")
    assert performance.status == "error" and performance.observed == 57


def _issue(state: str, shown: str) -> dict[str, object]:
    return {"number": 1, "state": state,
            "body": f"{issue_marker('m')}\n{state_line(shown)}\nbody"}  # type: ignore[arg-type]


@pytest.mark.parametrize(("issue", "drifted", "expected"), [
    (None, True, Decision(("create",), dispatch=True)),
    (_issue("open", "drift"), True, Decision(("update",))),
    (_issue("closed", "clear"), True, Decision(("update", "reopen", "comment"), "back", True)),
    (_issue("open", "clear"), True, Decision(("update", "comment"), "back", True)),
    (None, False, Decision(())),
    (_issue("open", "drift"), False, Decision(("update", "comment", "close"), "cleared")),
    (_issue("open", "clear"), False, Decision(())),
    (_issue("closed", "clear"), False, Decision(())),
])
def test_decisions(issue: dict[str, object] | None, drifted: bool, expected: Decision) -> None:
    assert decide(issue, drifted, on_clear="close", dispatch_on="change") == expected


def test_leave_and_every() -> None:
    assert decide(_issue("open", "drift"), False, on_clear="leave", dispatch_on=None) == \
        Decision(("update", "comment"), "cleared")
    assert decide(_issue("open", "drift"), True, on_clear="close", dispatch_on="every") == \
        Decision(("update",), dispatch=True)


def test_the_state_is_read_only_from_the_second_line() -> None:
    assert reported_state(f"{issue_marker('m')}\n{state_line('drift')}\n") == "drift"
    assert reported_state(f"{issue_marker('m')}\ntext {state_line('drift')}\n") is None
