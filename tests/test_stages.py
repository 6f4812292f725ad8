"""The stage registry and the option tables generated from it: one entry per stage, one row per
key, and the CLI, the environment and the schema agree on every one of them."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

from shipml import stages
from shipml._stage import Option, add_options, overrides, stage_config
from shipml.cli import build_parser, main
from shipml.config import key_schema, key_types, load_config, schema
from shipml.errors import ConfigError


def _options(stage: stages.Stage) -> tuple[Option, ...]:
    return tuple(importlib.import_module(stage.module).OPTIONS)


def test_every_stage_is_a_command_a_schema_section_and_in_order() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for stage in stages.STAGES:
        assert stage.name in commands
        if stage.section:
            assert stage.name in schema()["properties"]
    assert list(schema()["properties"]) == list(stages.sections())
    assert stages.rank("latency") < stages.rank("report") < stages.rank("not-a-stage")


@pytest.mark.parametrize("stage", stages.STAGES, ids=lambda s: s.name)
def test_every_option_names_a_key_of_the_schema_once(stage: stages.Stage) -> None:
    options = _options(stage)
    assert options, f"{stage.name} has no option table"
    for option in options:
        assert key_schema(option.key), f"{option.flag}: {option.key} is not in the schema"
        assert option.env.startswith("SHIPML_") and option.flag.startswith("--")
        assert option.key[0] in (stage.name, *stages.SHARED_SECTIONS)
    for field in ("flag", "env", "key"):
        values = [getattr(option, field) for option in options]
        assert len(values) == len(set(values)), f"{stage.name}: a repeated {field}"


@pytest.mark.parametrize("stage", stages.STAGES, ids=lambda s: s.name)
def test_a_consumed_handoff_is_an_option_of_the_stage(stage: stages.Stage) -> None:
    keys = {option.key for option in _options(stage)}
    for wanted in stage.consumes:
        assert wanted.key in keys
        assert any(wanted.kind in other.produces for other in stages.STAGES[:stages.rank(stage.name)])


def _parse(options: tuple[Option, ...], argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_options(parser, options)
    return parser.parse_args(argv)


LATENCY = _options(stages.STAGES[stages.rank("latency")])
REPORT = _options(stages.STAGES[stages.rank("report")])


def test_values_take_the_type_the_schema_gives_their_key(tmp_path: Path) -> None:
    args = _parse(LATENCY, ["--batch-sizes", "1, 8,32", "--tolerance", "0.2", "--no-html"])
    config = stage_config(args, LATENCY)
    latency = config.section("latency")
    assert latency["batch_sizes"] == [1, 8, 32]
    assert latency["baseline"]["tolerance"] == 0.2
    assert latency["html"] is False
    assert config.where("latency", "batch_sizes") == "--batch-sizes"


def test_a_flag_beats_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    path = tmp_path / "shipml.yaml"
    path.write_text("latency:\n  provider: file\n  max_time_s: 9\n")
    args = _parse(LATENCY, ["--config", str(path), "--provider", "flag"])
    env = {"SHIPML_PROVIDER": "environment", "SHIPML_MAX_TIME": "5"}
    config = load_config(path, overrides(args, LATENCY, env))
    assert config.section("latency")["provider"] == "flag"
    assert config.section("latency")["max_time_s"] == 5.0
    assert config.where("latency", "max_time_s") == "environment SHIPML_MAX_TIME"
    assert load_config(path).section("latency")["provider"] == "file"


def test_an_empty_variable_is_not_set() -> None:
    assert overrides(_parse(LATENCY, []), LATENCY, {"SHIPML_PROVIDER": "  "}) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--batch-sizes", "1,eight"], "--batch-sizes: 'eight' is not a whole number"),
    (["--tolerance", "ten"], "--tolerance: 'ten' is not a number"),
    (["--batch-sizes", "0"], "--batch-sizes: 0 is less than the minimum of 1"),
])
def test_a_bad_value_names_the_flag_and_what_is_valid(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        stage_config(_parse(LATENCY, argv), LATENCY)
    assert error.value.message.startswith(message)


def test_a_boolean_flag_alone_means_true_and_its_no_form_false() -> None:
    assert "boolean" in key_types(("report", "fail_on_publish_error"))
    bare = stage_config(_parse(REPORT, ["--fail-on-publish-error"]), REPORT)
    assert bare.section("report")["fail_on_publish_error"] is True
    off = stage_config(_parse(REPORT, ["--no-summary", "--pull-request", "7"]), REPORT)
    assert off.section("report")["summary"] is False
    assert off.section("report")["pull_request"] == 7


def test_a_boolean_variable_takes_only_boolean_words() -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides(_parse(LATENCY, []), LATENCY, {"SHIPML_HTML": "maybe"}))
    assert error.value.message == \
        "environment SHIPML_HTML: 'maybe' is not a boolean; use true or false"
    config = load_config(None, overrides(_parse(LATENCY, []), LATENCY, {"SHIPML_HTML": "off"}))
    assert config.section("latency")["html"] is False


def test_none_is_the_empty_list() -> None:
    from shipml.validate.cli import OPTIONS

    config = stage_config(_parse(OPTIONS, ["--suites", "none"]), OPTIONS)
    assert config.section("validate")["suites"] == []


def test_help_shows_each_key_and_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["latency", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--baseline-ref REF git ref to read the baseline from (latency.baseline.git_ref; " \
           "$SHIPML_BASELINE_REF)" in text
    assert "--html write artifacts/latency.html (latency.html; $SHIPML_HTML) --no-html" in text


def test_only_the_sections_written_count_as_configured(tmp_path: Path) -> None:
    path = tmp_path / "shipml.yaml"
    path.write_text("model:\n  path: m.onnx\nlatency: {}\n")
    config = load_config(path)
    assert config.written == {"model", "latency"}
    assert set(config.data) >= {"validate", "optimize", "report"}  # defaults fill the rest


def test_the_cli_reference_lists_every_option_with_its_variable_and_key() -> None:
    reference = Path(__file__).resolve().parents[1] / "docs" / "reference" / "cli.md"
    rows = [line for line in reference.read_text(encoding="utf-8").splitlines()
            if line.startswith("| `--")]
    for stage in stages.STAGES:
        for option in _options(stage):
            dotted_key = ".".join(option.key)
            assert any(f"`{option.flag}" in row and f"`{option.env}`" in row
                       and f"`{dotted_key}`" in row for row in rows), \
                f"docs/reference/cli.md lacks {option.flag} ({stage.name})"


def test_a_stage_prints_at_most_fifty_checks_and_says_how_many_more(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shipml._stage import PRINTED_CHECKS, conclude
    from shipml.ci import LocalPlatform
    from shipml.results import Check, StageResult

    checks = tuple(Check(f"check {i} holds", "fail", detail=f"detail {i}") for i in range(120))
    result = StageResult(stage="validate", status="fail", summary="120 failed",
                         started_at="2026-12-03T00:00:00+00:00", duration_s=1.0, checks=checks)
    assert conclude(result, result.write(tmp_path), LocalPlatform({})) == 1
    out = capsys.readouterr().out
    assert out.count("  FAIL  check ") == PRINTED_CHECKS == 50
    assert "… and 70 more checks that did not pass: every one is in the result file" in out


# --- no stage is named outside its package and the registry ------------------------------------

PACKAGE = Path(__file__).parents[1] / "scripts" / "shipml"
#: where a quoted stage name is not a stage, by file and name, and why
NOT_A_STAGE: dict[tuple[str, str], str] = {
    ("build/_package.py", "serve"): "the pip extra shipml[serve] the built-in image installs",
    ("build/core.py", "serve"): "build copies the serve section of shipml.yaml into the image "
                                "it builds (the server reads it there)",
    ("commands/init.py", "validate"): "the sections of the shipml.yaml that init writes",
    ("validate/cli.py", "report"): "the action output `report`, the stage's HTML file",
    ("latency/cli.py", "report"): "the action output `report`, the stage's HTML file",
    ("monitor/cli.py", "report"): "the action output `report`, the stage's HTML file",
    ("measure/inputs.py", "latency"): "measure is latency's and optimize's measuring library: "
                                      "the stage whose section it reads by default",
    ("monitor/_drift.py", "validate"): "monitor builds its checks with validate's builders, "
                                       "which name keys of the validate section",
    ("canary/targets/kubernetes.py", "build"): "the function build() in __all__, no stage",
    ("generate/actions.py", "build"): "the generator's per-action extras, keyed by action",
    ("generate/actions.py", "canary"): "the generator's per-action extras, keyed by action",
    ("generate/actions.py", "monitor"): "the generator's per-action extras, keyed by action",
    ("generate/actions.py", "report"): "the generator's per-action extras, keyed by action",
    ("commands/_demo_release.py", "build"): "the command lines the demo runs, as a user types them",
    ("commands/_demo_release.py", "sign"): "the command lines the demo runs, as a user types them",
    ("commands/_demo_release.py", "canary"): "the command lines the demo runs and the canary "
                                              "section of its config",
    ("commands/_demo_release.py", "report"): "the command line the demo runs, as a user types it",
    ("commands/demo.py", "report"): "the command line the demo runs, as a user types it",
    ("paired.py", "canary"): "the judge's sentence names the two revisions it compares",
    ("validate/_baseline.py", "latency"): "the config section a baseline is read from",
}


def _quoted_stage_names() -> list[tuple[str, str, int]]:
    """Return (file, stage, line) for every string literal that is exactly a stage's name, in a
    module outside that stage's package and the registry."""
    import ast

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "stages.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and node.value in stages.names()
                    and not relative.startswith(f"{node.value}/")):
                found.append((relative, node.value, node.lineno))
    return found


def test_no_stage_is_named_outside_its_package_and_the_registry() -> None:
    named = [f"{file}:{line}: {name!r}" for file, name, line in _quoted_stage_names()
             if (file, name) not in NOT_A_STAGE]
    assert not named, ("name the stage through shipml.stages (a registry field or function), "
                       "not as a string:\n" + "\n".join(named))


def test_the_gates_an_attestation_carries_are_the_pull_request_gates_by_default() -> None:
    import json

    written = json.loads((PACKAGE / "schema" / "sign.json").read_text())
    assert "default" not in written["properties"]["gates"]
    assert load_config(None).section("sign")["gates"] == list(stages.pull_request_gates()) == [
        "validate", "optimize", "latency"]
    assert schema()["properties"]["sign"]["properties"]["gates"]["default"] == [
        "validate", "optimize", "latency"]
