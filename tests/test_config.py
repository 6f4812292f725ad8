"""shipml.yaml: schema, defaults, precedence and error messages."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from shipml.config import Override, load_config, parse_bool, schema
from shipml.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shipml.yaml"
    path.write_text(text)
    return path


def test_published_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert set(schema()["properties"]) >= {"model", "validate"}


def test_defaults_are_filled(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "model:\n  path: m.onnx\n"))
    validate = config.section("validate")
    assert validate["fail_on"] == "fail"
    assert validate["suites"] == ["data_integrity", "train_test_validation", "model_evaluation"]
    assert config.section("model")["task"] == "auto"


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).section("validate")["fail_on"] == "fail"


def test_precedence_flag_over_environment_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "validate:\n  fail_on: never\n")
    env = [Override(("validate", "fail_on"), "warn", "environment SHIPML_FAIL_ON")]
    assert load_config(path).section("validate")["fail_on"] == "never"
    assert load_config(path, env).section("validate")["fail_on"] == "warn"
    flag = Override(("validate", "fail_on"), "fail", "--fail-on")
    assert load_config(path, [*env, flag]).section("validate")["fail_on"] == "fail"


def test_where_names_file_line_or_source(tmp_path: Path) -> None:
    path = write(tmp_path, "# comment\nmodel:\n  label: y\n")
    config = load_config(path, [Override(("model", "path"), "m.onnx", "--model")])
    assert config.where("model", "label") == f"{path}:3 model.label"
    assert config.where("model", "path") == "--model"


def test_paths_resolve_against_the_config_folder_and_flags_against_cwd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = write(folder, "model:\n  path: m.onnx\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(path, [Override(("model", "train"), "t.csv", "--train")])
    assert config.resolve_path("m.onnx", "model", "path") == folder / "m.onnx"
    assert config.resolve_path("t.csv", "model", "train") == tmp_path / "t.csv"


def test_wrong_type_names_the_key_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "validate:\n  batch_size: lots\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}:2 validate.batch_size: 'lots' is not of type")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r":1: the top level must be a mapping of sections"):
        load_config(write(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize("text", ["true", "True", "1", "yes", "on"])
def test_parse_bool_true(text: str) -> None:
    assert parse_bool(text, "--x") is True


def test_parse_bool_is_strict() -> None:
    with pytest.raises(ConfigError, match=r"--html: 'maybe' is not a boolean; use true or false"):
        parse_bool("maybe", "--html")


@pytest.mark.parametrize(("text", "message"), [
    # the branch of the value's own kind speaks, never a branch for another kind of value
    ("canary:\n  steps:\n    - weight: 150\n",
     "canary.steps[0].weight: 150 is greater than the maximum of 100; valid: a whole number from "
     "1 to 100 (canary share of traffic, %)"),
    ("canary:\n  steps:\n    - weight: ten\n",
     "canary.steps[0].weight: 'ten' is not of type 'integer'; valid: a whole number from 1 to "
     "100"),
    ("canary:\n  steps:\n    - 7\n",
     "canary.steps[0]: 7 is not valid; valid: {weight: 1 to 100, pause: 30s | manual} or "
     "{shadow: 2m | manual, sample: 0.2} before the weight steps"),
    ("canary:\n  steps:\n    - shadow: 2m\n      sample: 2\n",
     "canary.steps[0].sample: 2 is greater than the maximum of 1"),
    ("canary:\n  steps:\n    - pause: 2m\n",
     "canary.steps[0]: {'pause': '2m'} is not valid; valid: {weight: 1 to 100"),
    ("validate:\n  workers: 0\n",
     "validate.workers: 0 is less than the minimum of 1; valid: a whole number of at least 1"),
    ("validate:\n  workers: many\n",
     "validate.workers: 'many' is not valid; valid: 'auto' or a whole number of at least 1"),
    ("validate:\n  pytest: 5\n",
     "validate.pytest: 5 is not valid; valid: text or a list or null (unset)"),
    ("validate:\n  pytest: []\n", "validate.pytest: [] should be non-empty"),
])
def test_a_one_of_error_names_the_key_the_value_and_what_is_valid(
        tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}:")
    assert message in str(error.value)
    assert "is not of type 'string'" not in str(error.value)
    assert "is not valid under any of the given schemas" not in str(error.value)


def test_every_one_of_and_any_of_in_the_schemas_names_what_is_valid(tmp_path: Path) -> None:
    # A value of a kind no branch takes (a mapping here, where none is a mapping) gets the list
    # of what each branch takes, for every oneOf/anyOf key of every section.
    from shipml.config import _valid_values

    def walk(node: object, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], dict]]:
        found = []
        if isinstance(node, dict):
            for word in ("oneOf", "anyOf"):
                if word in node:
                    found.append((path, node))
            for key, sub in (node.get("properties") or {}).items():
                found += walk(sub, (*path, key))
        return found

    keys = walk(schema(), ())
    assert {key for key, _ in keys} >= {("validate", "pytest"), ("validate", "workers")}
    for key, node in keys:
        for branch in (*node.get("oneOf", ()), *node.get("anyOf", ())):
            assert branch.get("description") or _valid_values(branch), (key, branch)


def test_a_bound_is_said_as_the_schema_writes_it(tmp_path: Path) -> None:
    # :g formatting said 1048576 as 1.04858e+06
    path = write(tmp_path, "model:\n  inputs:\n    dims: {sequence_length: 2000000}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "a whole number from 1 to 1048576" in str(error.value), str(error.value)
