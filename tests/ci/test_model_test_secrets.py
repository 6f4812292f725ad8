"""The team's pytest model tests are pull-request code: they run without any token or credential."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from shipml.validate._pytest import run_model_tests, scrub_environment

SECRETS = {
    "GITHUB_TOKEN": "ghs_job_token",
    "SHIPML_GITHUB_TOKEN": "ghs_shipml_token",
    "ACTIONS_RUNTIME_TOKEN": "runtime",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc",
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://oidc.example.test/",
    "AWS_SECRET_ACCESS_KEY": "aws",
    "REGISTRY_PASSWORD": "registry",
    "DEPLOY_KEY": "key",
    "PIP_INDEX_URL": "https://user:pypi-secret@pypi.example.test/simple",
    "GITHUB_ENV": "/tmp/runner/set_env",
    "GITHUB_OUTPUT": "/tmp/runner/set_output",
    "GITHUB_PATH": "/tmp/runner/add_path",
}
KEPT = {"GITHUB_REPOSITORY": "acme/wine", "GITHUB_SHA": "abc", "CI": "true", "GIT_AUTHOR_NAME": "a"}


def test_scrub_keeps_ordinary_variables_and_drops_credentials() -> None:
    assert scrub_environment({**SECRETS, **KEPT}) == KEPT


def test_a_model_test_cannot_see_the_token(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    leaked = tmp_path / "leaked.txt"
    values = sorted(SECRETS.values())
    (tests / "test_steal.py").write_text(textwrap.dedent(f"""
        import os

        def test_no_secret_in_the_environment():
            dump = "\\n".join(f"{{k}}={{v}}" for k, v in os.environ.items())
            open({str(leaked)!r}, "w").write(dump)
            for value in {values!r}:
                assert value not in dump
            assert os.environ["GITHUB_REPOSITORY"] == "acme/wine"
    """), encoding="utf-8")
    environ = {**os.environ, **SECRETS, **KEPT}
    outcome = run_model_tests([tests], [], where="validate.pytest", cwd=tmp_path,
                              junit_path=tmp_path / "junit.xml", environ=environ)
    assert [(check.name, check.status) for check in outcome.checks] == [
        ("pytest tests/test_steal.py::test_no_secret_in_the_environment", "pass")]
    dump = leaked.read_text(encoding="utf-8")
    assert "GITHUB_REPOSITORY=acme/wine" in dump
    assert not [value for value in SECRETS.values() if value in dump]
