"""One declaration per option: an :class:`Option` names its key, flag, variable, help and action
input; argparse, the environment overrides and every action.yml's inputs and env lines come from
it, and the JSON Schema gives what the option does not say. The latency budget keys are the
schema's alone."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from shipml import stages
from shipml._stage import Option, add_options, overrides
from shipml.config import key_schema
from shipml.generate import actions
from shipml.latency import _judge

REPO = Path(__file__).resolve().parents[1]


def test_an_input_is_named_after_its_flag_unless_declared() -> None:
    assert Option("--failure-limit", ("canary", "failure_limit"), "SHIPML_FAILURE_LIMIT"
                  ).input_name == "failure-limit"
    assert Option("--output", ("optimize", "output"), "SHIPML_OPTIMIZED_MODEL",
                  input="optimized-model").input_name == "optimized-model"


def test_help_falls_back_to_the_schemas_description(capsys: pytest.CaptureFixture[str]) -> None:
    option = Option("--lease", ("canary", "lease"), "SHIPML_CANARY_LEASE")
    described = key_schema(("canary", "lease"))["description"]
    assert described and option.description == described
    assert Option("--lease", ("canary", "lease"), "SHIPML_CANARY_LEASE", "mine").description == "mine"
    parser = argparse.ArgumentParser()
    add_options(parser, [option])
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    assert " ".join(described.split())[:30] in " ".join(capsys.readouterr().out.split())


def test_a_flag_wins_over_the_variable_of_the_same_declaration() -> None:
    option = Option("--lease", ("canary", "lease"), "SHIPML_CANARY_LEASE")
    parser = argparse.ArgumentParser()
    add_options(parser, [option])
    found = overrides(parser.parse_args(["--lease", "5m"]), [option],
                      {"SHIPML_CANARY_LEASE": "1m"})
    assert [(o.value, o.source) for o in found] == [("1m", "environment SHIPML_CANARY_LEASE"),
                                                    ("5m", "--lease")]


@pytest.mark.parametrize("stage", [s for s in stages.STAGES if s.name != "serve"],
                         ids=lambda s: s.name)
def test_every_option_of_a_stage_is_an_input_of_its_action(stage: stages.Stage) -> None:
    inputs = {each.name: each for each in actions.action_inputs(stage.name)}
    for option in actions.stage_options(stage.name):
        found = inputs[option.input_name]
        assert found.env == option.env
        assert found.description.endswith(f"({'.'.join(map(str, option.key))})")


def test_a_renamed_input_keeps_its_old_name_deprecated() -> None:
    option = Option("--output", ("optimize", "output"), "SHIPML_OPTIMIZED_MODEL",
                    input="optimized-model", old_inputs=("output-model",))
    rendered = actions.render_inputs([actions.option_input(option)])
    parsed = yaml.safe_load(rendered)["inputs"]
    assert set(parsed) == {"optimized-model", "output-model"}
    assert "use optimized-model" in parsed["output-model"]["deprecationMessage"]
    assert "deprecationMessage" not in parsed["optimized-model"]
    env = actions.render_env([actions.option_input(option)])
    assert "SHIPML_OPTIMIZED_MODEL: ${{ inputs.optimized-model || inputs.output-model }}" in env


def test_the_all_in_one_action_merges_one_input_of_several_stages() -> None:
    (fail_on,) = [each for each in actions.action_inputs(actions.PIPELINE) if each.name == "fail-on"]
    assert fail_on.env == "SHIPML_FAIL_ON"
    assert "validate.fail_on, optimize.fail_on, latency.fail_on" in fail_on.description


def test_an_action_without_markers_is_named(tmp_path: Path) -> None:
    path = tmp_path / "action.yml"
    with pytest.raises(ValueError, match=f"{path}: expected one '# --- inputs: generated"):
        actions.render("validate", "name: x\ninputs:\n  config: {}\n", path)


def test_the_generated_blocks_are_the_only_parts_rewritten() -> None:
    text = (REPO / "actions" / "canary" / "action.yml").read_text(encoding="utf-8")
    emptied = text.replace("  lease:\n", "  leash:\n", 1)
    assert emptied != text
    assert actions.render("canary", emptied, Path("canary")) == text
    hand_written = text.replace("name: shipml canary", "name: shipml canary!", 1)
    assert actions.render("canary", hand_written, Path("canary")) == hand_written


def test_budget_keys_are_the_schemas() -> None:
    per_batch = key_schema(("latency", "budgets"))["additionalProperties"]["properties"]
    assert list(_judge.budget_keys()) == list(per_batch)
    assert _judge.budget_keys()["throughput_min"] == _judge.Budget("throughput", False, "rows/s",
                                                                   "throughput")
    assert _judge.budget_keys()["p50_ms"].stem == "median latency"


@pytest.mark.parametrize("key", ["p75_ms", "latency_ms", "p95_s", "memory"])
def test_a_budget_key_that_bounds_no_measured_figure_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match=f"budget key {key!r} is not <figure>_ms"):
        _judge.budget(key)
