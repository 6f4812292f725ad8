"""Both workflow templates through real act, offline, in host mode, as a user's repository holds
them (the default-branch placeholder filled in as GitHub does), pointed at this checkout's actions:
the pull-request template on a pull_request event, the release template on a push to main against
the local Docker Engine and registry (`bash .ci/services`), with a key from `shipml keygen`. Then
the same templates fed hostile event fields (branch and tag names, titles, commit messages), which
reach shipml only as data: nothing they hold is executed.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.actions import _act
from tests.actions._act import REPO, run_template
from tests.actions.conftest import KEY_PASSWORD, REGISTRY, release_config

pytestmark = [pytest.mark.act, pytest.mark.slow]

_QUICK_LATENCY = {"batch_sizes": [1], "max_time_s": 2, "min_runs": 50, "process_time_s": 0.2,
                  "min_processes": 2}
PR_CONFIG = {"model": {"path": "model.onnx", "label": "benign", "train": "train.csv", "test": "test.csv"},
             "validate": {"suites": ["data_integrity"], "warn_only": ["FeatureFeatureCorrelation"]},
             "latency": {**_QUICK_LATENCY, "baseline": {"path": "model.onnx"}}}


def _with_origin_main(workspace: Path) -> None:
    """A clone has origin/main, which the latency gate's git-ref baseline reads."""
    subprocess.run(["git", "update-ref", "refs/remotes/origin/main", "HEAD"], cwd=workspace, check=True)


def _hostile(marker: Path, keep: Path) -> dict[str, str]:
    return {"subst": f"$(touch {marker})", "tick": f"`touch {marker}`",
            "quote": f'"; rm -rf {keep};"'}


def _keep(tmp_path: Path) -> Path:
    keep = tmp_path / "keep-me"
    keep.mkdir()
    (keep / "file").write_text("still here")
    return keep


def _secrets(key: Path) -> dict[str, str]:
    return {"COSIGN_PRIVATE_KEY": key.read_text(), "COSIGN_PASSWORD": KEY_PASSWORD}


TEMPLATES = sorted((REPO / "workflow-templates").glob("*.yml"))


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_no_template_writes_an_expression_into_a_script_or_fetches_an_action_under_act(
        template: Path) -> None:
    import yaml

    if True:
        workflow = yaml.safe_load(template.read_text(encoding="utf-8"))
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), (template.name, step)
                if "uses" in step and not step["uses"].startswith(("OWNER/shipml", "actions/checkout@")):
                    # act fetches every `uses:` before evaluating `if:`; on GitHub it runs
                    assert "!env.ACT" in str(step.get("if", "")), (template.name, step["uses"])


def test_the_pull_request_template_runs_the_gates_and_reports_without_posting(
    act_home: Path, action_source: Path, tmp_path: Path,
) -> None:
    workspace = _act.prepare_workspace(tmp_path / "repo", PR_CONFIG)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=workspace, check=True)
    subprocess.run(["git", "add", "-A"], cwd=workspace, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit",
                    "-q", "-m", "base"], cwd=workspace, check=True)
    _with_origin_main(workspace)
    run = run_template("shipml-pr.yml", workspace=workspace, source=action_source,
                       cache_home=act_home, event="pull_request")
    assert run.returncode == 0, run.log[-6000:]
    outputs = run.outputs("shipml", "pipeline")
    assert outputs["status"] == outputs["verdict"] == "pass", run.log[-6000:]
    assert outputs["half"] == "pull_request"
    assert outputs["validate-status"] == outputs["latency-status"] == "pass"
    assert outputs["build-status"] == outputs["image"] == outputs["rollout"] == ""
    assert outputs["report"] == ".shipml/report/report.md" and outputs["comment-url"] == ""
    assert "would post to acme/wine#7" in run.log
    # the artifact upload is skipped under act (and was never fetched: a stub stood in)
    assert "the stub of actions/upload-artifact" not in run.log


def test_the_pull_request_template_takes_hostile_event_fields_as_data(
    act_home: Path, action_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker, keep = tmp_path / f"pwned-{uuid.uuid4().hex}", _keep(tmp_path)
    hostile = _hostile(marker, keep)
    event = copy.deepcopy(_act.PULL_REQUEST_EVENT)
    pull: dict[str, Any] = event["pull_request"]  # type: ignore[assignment]
    pull["base"]["ref"] = f"main{hostile['subst']}{hostile['tick']}"
    pull["head"]["ref"] = hostile["quote"]
    pull["title"] = pull["body"] = " ".join(hostile.values())
    monkeypatch.setattr(_act, "PULL_REQUEST_EVENT", event)
    run = run_template("shipml-pr.yml", workspace=tmp_path / "repo", source=action_source,
                       cache_home=act_home, event="pull_request",
                       config={"model": PR_CONFIG["model"], "latency": PR_CONFIG["latency"]})
    outputs = run.outputs("shipml", "pipeline")
    # the hostile base branch is a baseline ref that does not exist: bad input, said as such
    assert run.returncode != 0 and outputs["status"] == "error", run.log[-6000:]
    assert outputs["latency-status"] == "error"
    assert "origin/main$(touch" in run.log
    assert not marker.exists()
    assert (keep / "file").read_text() == "still here"


@pytest.mark.docker
def test_the_release_template_gates_builds_signs_and_rolls_out_on_a_push_to_main(
    act_home: Path, action_source: Path, tmp_path: Path, service: str, test_key: Path,
) -> None:
    run = run_template("shipml-release.yml", workspace=tmp_path / "repo", source=action_source,
                       cache_home=act_home, event="push", config=release_config(service),
                       secrets=_secrets(test_key))
    assert run.returncode == 0, run.log[-8000:]
    release = run.outputs("shipml", "release")
    assert (release["status"], release["verdict"], release["half"]) == ("pass", "pass", "release")
    assert release["latency-status"] == release["build-status"] == release["sign-status"] == "pass"
    assert release["canary-status"] == ""  # the rollout job does it, behind its environment
    assert release["rollout"] == "deferred"
    assert release["image"] == f"{REGISTRY}/{service}" and release["digest"].startswith("sha256:")
    assert release["report"] == ".shipml/report/report.md"
    canary = run.outputs("canary", "rollout")
    assert (canary["status"], canary["outcome"], canary["final-weight"]) == ("pass", "promoted", "100")
    assert "| outcome | promoted |" in run.log  # the job summary
    # signed with the test key, and the attestation carries the latency gate of this commit
    verified = subprocess.run(
        [str(REPO / ".venv" / "bin" / "shipml"), "verify", "--key", str(test_key.with_suffix(".pub")),
         "--require-gates", "--required-gates", "latency", f"{release['image']}@{release['digest']}",
         "--output-dir", str(tmp_path / "verify")],
        capture_output=True, text=True, check=False, env={**os.environ, "SHIPML_CI": "local"})
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.docker
def test_a_failed_gate_on_a_hostile_tag_builds_nothing_rolls_out_nothing_and_executes_nothing(
    act_home: Path, action_source: Path, tmp_path: Path, service: str, test_key: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker, keep = tmp_path / f"pwned-{uuid.uuid4().hex}", _keep(tmp_path)
    hostile = _hostile(marker, keep)
    event = copy.deepcopy(_act.PUSH_EVENT)
    event["ref"] = f"refs/tags/v1.0.0{hostile['subst']}"
    event["head_commit"] = {"message": " ".join(hostile.values()), "id": "0" * 40}
    monkeypatch.setattr(_act, "PUSH_EVENT", event)
    config = release_config(service, latency={**_QUICK_LATENCY, "budgets": {"1": {"p95_ms": 1e-6}}})
    run = run_template("shipml-release.yml", workspace=tmp_path / "repo", source=action_source,
                       cache_home=act_home, event="push", config=config,
                       secrets={**_secrets(test_key), "COSIGN_PASSWORD": hostile["tick"]})
    assert run.returncode != 0
    release = run.outputs("shipml", "release")
    assert (release["status"], release["latency-status"]) == ("fail", "fail"), run.log[-8000:]
    assert release["build-status"] == release["sign-status"] == "skipped"
    assert release["rollout"] == "not-run" and release["image"] == release["digest"] == ""
    assert run.jobs["rollout"] == {}  # the rollout job never started
    assert "not run: latency failed" in run.log
    assert not marker.exists()
    assert (keep / "file").read_text() == "still here"
    listed = subprocess.run(["curl", "-s", f"http://{REGISTRY}/v2/{service}/tags/list"],
                            capture_output=True, text=True, check=False)
    assert "NAME_UNKNOWN" in listed.stdout or json.loads(listed.stdout or "{}").get("tags") in (None, [])
