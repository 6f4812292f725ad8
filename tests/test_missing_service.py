"""One policy for a missing service: the test fails with the command that starts it
(``bash .ci/services``); no test skips."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests._services import START_COMMAND, require_tools

TESTS = Path(__file__).resolve().parent


def test_a_missing_program_fails_the_test_naming_the_command() -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        require_tools("shipml-test-no-such-program")
    assert str(failed.value) == (
        f"shipml-test-no-such-program not on PATH after `{START_COMMAND}`: run it as root "
        "(it installs them with apt-get)")


def test_a_program_on_path_is_taken_as_it_is() -> None:
    require_tools("bash")


def _skips(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in ("skip", "skipif", "importorskip") and \
                isinstance(node.value, (ast.Name, ast.Attribute)) and \
                ast.unparse(node.value) in ("pytest", "pytest.mark"):
            found.append(f"{path.relative_to(TESTS.parent)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_test_skips() -> None:
    # a skipped test is green in a run that checked nothing: fail with the command instead
    found = [line for path in sorted(TESTS.rglob("*.py")) for line in _skips(path)]
    assert found == []
