"""actions/latency: a thin shim, run the way the runner runs it, hostile inputs included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipml.latency.cli import OPTIONS
from tests._action_step import load_action, run_step
from tests._models import FAST, write_config

READ_ELSEWHERE = {"SHIPML_CONFIG", "SHIPML_OUTPUT_DIR"}


def test_every_input_reaches_a_variable_the_cli_reads() -> None:
    action = load_action("latency")
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == "latency"]
    assert step["run"].strip().removeprefix("exec ") == '"$SHIPML_EXECUTABLE" latency'
    assert step["env"]["SHIPML_EXECUTABLE"] == "${{ steps.install.outputs.shipml }}"
    assert "${{" not in step["run"]
    mapped = {expression.split("inputs.")[1].rstrip(" }"): variable
              for variable, expression in step["env"].items() if "inputs." in expression}
    assert set(mapped) == set(action["inputs"]) - {"working-directory", "python-version"}
    assert set(mapped.values()) <= {option.env for option in OPTIONS} | READ_ELSEWHERE
    for name, output in action["outputs"].items():
        assert output["value"] == f"${{{{ steps.latency.outputs.{name} }}}}"


def test_action_run_publishes_outputs(workdir: Path) -> None:
    write_config(workdir, {"model": {"path": "model.onnx", "label": "benign", "test": "test.csv"},
                           "latency": {**FAST, "budgets": {"1": {"p99_ms": 1000}}}})
    completed, outputs = run_step("latency", {"max-time": "1", "tolerance": "0.2"}, workdir)
    assert completed.returncode == 0, completed.stderr
    assert outputs["status"] == "pass"
    result = json.loads((workdir / outputs["result"]).read_text())
    assert result["checks"][0]["name"] == "p99 latency at batch 1 is below 1000 ms"
    assert float(outputs["p95-ms"]) == result["metrics"]["p95_ms"]
    assert Path(workdir / outputs["report"]).is_file()


@pytest.mark.parametrize("hostile", [
    'x.onnx"; touch pwned; echo "',
    "$(touch pwned).onnx",
    "`touch pwned`.onnx",
])
def test_hostile_input_is_data_not_code(workdir: Path, hostile: str) -> None:
    completed, outputs = run_step("latency", {"model": hostile}, workdir)
    assert completed.returncode == 2
    assert not (workdir / "pwned").exists()
    assert completed.stderr == (
        f"shipml latency: environment SHIPML_MODEL: model file {workdir / hostile} not found\n")
    assert outputs.get("status", "error") == "error"  # an error result, or none at all
