"""actions/report: a thin shim, run the way the runner runs it, hostile inputs included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipml.report.cli import OPTIONS, TOKEN_VARIABLES
from tests._action_step import load_action, run_step
from tests.report import pipelines
from tests.report.conftest import TOKEN
from tests.report.fake_github import FakeGitHub

READ_ELSEWHERE = {"SHIPML_CONFIG", "SHIPML_OUTPUT_DIR", *TOKEN_VARIABLES}


def test_every_input_reaches_a_variable_the_cli_reads() -> None:
    action = load_action("report")
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == "report"]
    assert step["run"].strip() == 'exec "$SHIPML_EXECUTABLE" report'
    assert "${{" not in step["run"]
    mapped = {expression.split("inputs.")[1].rstrip(" }"): variable
              for variable, expression in step["env"].items() if "inputs." in expression}
    assert set(mapped) == set(action["inputs"]) - {"working-directory", "python-version"}
    assert set(mapped.values()) <= {option.env for option in OPTIONS} | READ_ELSEWHERE
    assert mapped["github-token"] == "SHIPML_GITHUB_TOKEN"
    for name, output in action["outputs"].items():
        assert output["value"] == f"${{{{ steps.report.outputs.{name} }}}}"


def _pr_env(workdir: Path, github: FakeGitHub) -> dict[str, str]:
    event = workdir / "event.json"
    event.write_text(json.dumps({"number": 7, "pull_request": {"number": 7},
                                 "repository": {"full_name": "octo/models"}}))
    return {"GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": "octo/models",
            "GITHUB_API_URL": github.base_url, "GITHUB_RUN_ID": "42"}


def test_action_posts_the_comment_and_sets_outputs(tmp_path: Path, github: FakeGitHub) -> None:
    pipelines.write(pipelines.failing(), tmp_path / ".shipml")
    completed, outputs = run_step("report", {"github-token": TOKEN, "key": "gpu"}, tmp_path,
                                  _pr_env(tmp_path, github))
    assert completed.returncode == 0, completed.stderr
    (comment,) = github.comments[7]
    assert comment["body"].startswith("<!-- shipml-report:gpu -->\n## ❌ shipml: not ready")
    assert outputs["verdict"] == "fail" and outputs["comment-url"] == comment["html_url"]
    assert Path(tmp_path / outputs["html"]).is_file()
    assert github.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    for line in (completed.stdout + completed.stderr).splitlines():
        assert TOKEN not in line or line == f"::add-mask::{TOKEN}"


@pytest.mark.parametrize("hostile", ['x"; touch pwned; echo "', "$(touch pwned)", "`touch pwned`"])
def test_hostile_input_is_data_not_code(tmp_path: Path, github: FakeGitHub, hostile: str) -> None:
    pipelines.write(pipelines.passing(), tmp_path / ".shipml")
    completed, outputs = run_step("report", {"github-token": TOKEN, "key": hostile}, tmp_path,
                                  _pr_env(tmp_path, github))
    assert completed.returncode == 2
    assert not (tmp_path / "pwned").exists()
    assert completed.stderr.splitlines()[-1].startswith(
        f"shipml report: environment SHIPML_REPORT_KEY: {hostile!r} does not match")
    # the error still reaches the pull request, under the default key, as text
    (comment,) = github.comments[7]
    assert comment["body"].startswith("<!-- shipml-report:default -->\n## 💥 shipml: not ready "
                                      "to ship: report stopped with a configuration error")
    assert f"<pre>environment SHIPML_REPORT_KEY: {hostile!r} does not match" in comment["body"]
    assert outputs["verdict"] == "error"
