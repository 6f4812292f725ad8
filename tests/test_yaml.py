"""Reading shipml.yaml as untrusted input: bounded size, nesting and aliases; lines kept."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from shipml._yaml import MAX_ALIASES, MAX_BYTES, MAX_DEPTH, read_yaml
from shipml.cli import main
from shipml.errors import ConfigError

#: nine levels of nine aliases each: 9^9 (387 million) strings for whoever walks the data
BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + level)}: &{chr(98 + level)} [{', '.join([f'*{chr(97 + level)}'] * 9)}]\n"
    for level in range(8)
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shipml.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path) -> str:
    started = time.perf_counter()
    with pytest.raises(ConfigError) as raised:
        read_yaml(path)
    assert time.perf_counter() - started < 5
    return str(raised.value)


def validate_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["validate", "--config", str(path), "--output-dir", str(path.parent / "out")])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.err


def test_a_good_file_gives_the_data_and_the_line_of_every_key(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  path: model.onnx\n  label: churned\n"
                           "validate:\n  checks:\n    - check: FeatureDrift\n"
                           "      params: {n_samples: 10}\n")
    data, lines = read_yaml(path)
    assert data == yaml.safe_load(path.read_text())
    assert lines[("model", "label")] == 3
    assert lines[("validate", "checks", 0)] == 6
    assert lines[("validate", "checks", 0, "params", "n_samples")] == 7


def test_an_empty_file_is_no_data(tmp_path: Path) -> None:
    assert read_yaml(write(tmp_path, "# nothing yet\n")) == (None, {})


def test_a_few_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = write(tmp_path, "base: &base {fail_on: warn, html: false}\n"
                           "validate:\n  <<: *base\n  suites: &s [data_integrity]\n"
                           "other: *s\n")
    data, lines = read_yaml(path)
    assert data["validate"] == {"fail_on": "warn", "html": False, "suites": ["data_integrity"]}
    assert data["other"] == ["data_integrity"]
    assert lines[("validate", "suites")] == 4


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    message = refused(write(tmp_path, BILLION_LAUGHS))
    assert message.startswith(f"{tmp_path / 'shipml.yaml'}:")
    assert "aliases expand to more than 10000 values (an alias bomb?)" in message


def test_more_aliases_than_the_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n")
    assert refused(path).startswith(f"{path}:2:")
    assert f"more than {MAX_ALIASES} aliases" in refused(path)


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: *a}\n",
                                  "a: &a\n  - b: [1, *a]\n"])
def test_a_recursive_alias_is_named(tmp_path: Path, text: str) -> None:
    assert "alias *a refers to a node that contains it (a recursive alias)" in refused(
        write(tmp_path, text))


def test_an_undefined_alias_is_a_syntax_error_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "model: {}\nvalidate: *nope\n")
    assert refused(path) == f"{path}:2:11: YAML syntax error: found undefined alias 'nope'"


def test_100k_nested_brackets_are_refused_without_recursion_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[" * 100_000 + "]" * 100_000)
    message = refused(path)
    assert message.startswith(f"{path}:1:")
    assert message.endswith(f": nesting deeper than {MAX_DEPTH} levels; a shipml.yaml needs a few")


def test_nesting_deeper_than_the_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "".join("  " * level + "k:\n" for level in range(MAX_DEPTH + 5)))
    assert refused(path) == (f"{path}:{MAX_DEPTH + 1}:{2 * MAX_DEPTH + 1}: nesting deeper than "
                             f"{MAX_DEPTH} levels; a shipml.yaml needs a few")


def test_a_50_mb_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "shipml.yaml"
    with path.open("wb") as stream:
        stream.write(b"model: {}\n")
        stream.truncate(50 * 1024 * 1024)
    assert refused(path) == (f"{path}: the config file is 52,428,800 bytes; shipml reads at "
                             f"most {MAX_BYTES:,} bytes (1 MiB)")


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "validate:\n  fail_on: warn\nmodel: {}\nvalidate:\n  html: false\n")
    assert refused(path) == (f"{path}:4:1: key 'validate' appears twice in one mapping "
                             f"(first at line 1); keep one")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "shipml.yaml"
    path.write_bytes(b"model:\n  label: \xff\n")
    assert refused(path).startswith(f"{path}: cannot read config file ('utf-8' codec")


def test_a_folder_is_not_a_config_file(tmp_path: Path) -> None:
    assert refused(tmp_path) == f"{tmp_path}: cannot read config file (Is a directory)"


def test_a_large_legal_file_is_read_in_one_pass(tmp_path: Path) -> None:
    checks = "".join(f"    - check: FeatureDrift\n      params: {{n_samples: {index}}}\n"
                     for index in range(2000))
    path = write(tmp_path, "validate:\n  checks:\n" + checks)
    started = time.perf_counter()
    data, lines = read_yaml(path)
    assert time.perf_counter() - started < 2
    assert len(data["validate"]["checks"]) == 2000
    assert lines[("validate", "checks", 1999, "params")] == 2 + 2 * 2000


# The same refusals through the command, as a user meets them: exit 2, one line, no traceback.

def test_cli_billion_laughs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, BILLION_LAUGHS)
    code, err = validate_cli(path, capsys)
    assert code == 2
    assert err.startswith(f"shipml validate: {path}:")
    assert "(an alias bomb?)" in err


def test_cli_recursive_alias(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "model: &m {path: *m}\n")
    code, err = validate_cli(path, capsys)
    assert code == 2
    assert err == (f"shipml validate: {path}:1:18: alias *m refers to a node that contains it "
                   "(a recursive alias)\n")


def test_cli_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "model: " + "[" * 100_000 + "]" * 100_000 + "\n")
    code, err = validate_cli(path, capsys)
    assert code == 2
    assert err.startswith(f"shipml validate: {path}:1:")


def test_cli_oversized_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "model: {}\n" + "#" * MAX_BYTES + "\n")
    code, err = validate_cli(path, capsys)
    assert code == 2
    assert err.startswith(f"shipml validate: {path}: the config file is 1,048,587 bytes")
