"""The actions through real act, offline, in host mode, as a user runs them before pushing.

Hostile inputs go in where a pull request or a careless config could put them: command
substitution, backticks, spaces, and newlines that carry workflow commands. act reads the step log
for commands as GitHub's runner does (``::add-mask::`` masks every later occurrence, ``::warning::``
shows a 🚧 line), so "nothing injected" is checked on act's own log. One venv is installed per
session (act's and shipml's caches live in one XDG_CACHE_HOME); every later run reuses it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.actions._act import ActRun, run_workflow

pytestmark = [pytest.mark.act, pytest.mark.slow]

SETUP = "OWNER/shipml/actions/setup@v1"
VALIDATE = "OWNER/shipml/actions/validate@v1"
PIPELINE = "OWNER/shipml@v1"


def _pwned(tmp_path: Path) -> Path:
    return tmp_path / f"pwned-{uuid.uuid4().hex}"


def assert_nothing_injected(run: ActRun, token: str) -> None:
    """No forged command took effect: no mask, no warning or error line carrying ``token``."""
    lines = run.log.splitlines()
    assert not [line for line in lines if "\u2699  ***" in line], "a mask was added"
    assert not [line for line in lines if token in line and ("\U0001f6a7" in line or "\u2757" in line)]
    assert not [line for line in lines if "::stop-commands::" in line and "\u2699" in line]
    # "shipml" was the forged mask: were it masked, act would print *** for it from then on.
    assert "shipml" in run.log.split("Set up job", 1)[-1]


@pytest.fixture(scope="session")
def installed(act_home: Path, action_source: Path, tmp_path_factory: pytest.TempPathFactory) -> ActRun:
    """The real install: actions/setup with the validate extra into the act venv, once a session."""
    run = run_workflow([{"id": "setup", "uses": SETUP, "with": {"extras": "validate"}}],
                       workspace=tmp_path_factory.mktemp("ws") / "repo", source=action_source,
                       cache_home=act_home)
    assert run.returncode == 0, run.log[-6000:]
    return run


def test_setup_installs_into_the_act_venv_and_a_second_run_reuses_it(
    installed: ActRun, act_home: Path, action_source: Path, tmp_path: Path,
) -> None:
    first = installed.outputs("setup")
    venv = act_home / "shipml" / f"act-venv-dev-validate-{first['key'].split('-')[2][:8]}"
    assert installed.outcome("setup") == "success"
    assert first["python"] == str(venv / "bin" / "python")
    assert first["shipml"] == str(venv / "bin" / "shipml")
    assert first["cache-hit"] in ("false", "true")  # true when an earlier test already installed
    again = run_workflow([{"id": "setup", "uses": SETUP, "with": {"extras": "validate"}}],
                         workspace=tmp_path / "repo", source=action_source, cache_home=act_home)
    assert again.returncode == 0, again.log[-6000:]
    assert again.outputs("setup")["cache-hit"] == "true"
    assert again.outputs("setup")["shipml"] == first["shipml"]
    assert "pip not run" in again.log
    # nothing was cloned: the actions carry no third-party `uses:` step
    assert "git clone" not in again.log


def test_setup_refuses_hostile_venv_paths_and_runs_nothing(
    act_home: Path, action_source: Path, tmp_path: Path,
) -> None:
    marker = _pwned(tmp_path)
    token = uuid.uuid4().hex
    hostile = [
        f"$(touch {marker})",
        f"/tmp/`touch {marker}`",
        f"/tmp/a b/$(touch {marker})",
        f'/tmp/x";touch {marker};"',
        f"/tmp/v\n::add-mask::shipml\n::warning::{token}",
    ]
    steps = [{"id": f"h{number}", "uses": SETUP, "continue-on-error": True,
              "with": {"venv-path": value, "extras": ""}} for number, value in enumerate(hostile)]
    run = run_workflow(steps, workspace=tmp_path / "repo", source=action_source, cache_home=act_home)
    assert run.returncode == 0, run.log[-6000:]  # every step failed, each with continue-on-error
    for number in range(len(hostile)):
        assert run.outcome(f"h{number}") == "failure", number
        assert run.outputs(f"h{number}").get("shipml", "") == ""
    assert run.log.count("holds a character outside letters, digits and . _ + - /") == 4
    assert "contains a newline" in run.log
    assert not marker.exists()
    assert_nothing_injected(run, token)


def test_setup_refuses_hostile_extras_and_never_empties_a_folder_that_is_not_a_venv(
    act_home: Path, action_source: Path, tmp_path: Path,
) -> None:
    marker = _pwned(tmp_path)
    token = uuid.uuid4().hex
    precious = tmp_path / "home" / "notes.txt"
    precious.parent.mkdir()
    precious.write_text("keep me", encoding="utf-8")
    extras = [f"validate]; touch {marker} #", f"$(touch {marker})", f"`touch {marker}`",
              f"validate\n::error::{token}"]
    steps = [{"id": f"e{number}", "uses": SETUP, "continue-on-error": True, "with": {"extras": value}}
             for number, value in enumerate(extras)]
    steps.append({"id": "folder", "uses": SETUP, "continue-on-error": True,
                  "with": {"venv-path": str(precious.parent), "extras": ""}})
    run = run_workflow(steps, workspace=tmp_path / "repo", source=action_source, cache_home=act_home)
    assert run.returncode == 0, run.log[-6000:]
    for number in range(len(extras)):
        assert run.outcome(f"e{number}") == "failure", number
    assert run.log.count("is not a comma-separated list of extras") == len(extras)
    assert run.outcome("folder") == "failure"
    assert "exists and is not a virtual environment" in run.log
    assert precious.read_text(encoding="utf-8") == "keep me"
    assert not marker.exists()
    assert_nothing_injected(run, token)


def test_validate_action_does_not_execute_or_echo_hostile_inputs(
    installed: ActRun, act_home: Path, action_source: Path, tmp_path: Path,
) -> None:
    marker = _pwned(tmp_path)
    token = uuid.uuid4().hex
    run = run_workflow(
        [{"id": "validate", "uses": VALIDATE, "continue-on-error": True,
          "with": {"label": f'benign"; touch {marker} #\n::add-mask::shipml\n::warning::{token}',
                   "pytest": f"$(touch {marker})`touch {marker}`"}}],
        workspace=tmp_path / "repo", source=action_source, cache_home=act_home)
    assert run.outcome("validate") == "failure", run.log[-6000:]
    assert "pip not run" in run.log
    assert "is not in the data" in run.log
    assert not marker.exists()
    assert_nothing_injected(run, token)


def test_pipeline_passes_on_the_example_with_a_hostile_title_and_posts_nothing(
    installed: ActRun, act_home: Path, action_source: Path, tmp_path: Path,
) -> None:
    token = uuid.uuid4().hex
    run = run_workflow(
        [{"id": "shipml", "uses": PIPELINE,
          "with": {"stages": "validate,report", "suites": "data_integrity"}}],
        workspace=tmp_path / "repo", source=action_source, cache_home=act_home,
        env={"SHIPML_REPORT_TITLE": f"wine\n::add-mask::shipml\n::warning::{token}\n##[error]{token}"})
    assert run.returncode == 0, run.log[-6000:]
    outputs = run.outputs("shipml")
    assert outputs["status"] == "pass"
    assert outputs["validate-status"] == "pass"
    assert outputs["optimize-status"] == outputs["latency-status"] == ""
    assert outputs["results-dir"] == ".shipml/results"
    assert outputs["comment-url"] == ""
    assert outputs["markdown"].endswith(".md")
    assert token in run.log  # the title was printed, as text
    assert_nothing_injected(run, token)


def test_pipeline_error_message_with_a_hostile_provider_injects_nothing(
    installed: ActRun, act_home: Path, action_source: Path, tmp_path: Path,
) -> None:
    token = uuid.uuid4().hex
    run = run_workflow(
        [{"id": "shipml", "uses": PIPELINE, "continue-on-error": True, "with": {"stages": "latency"}}],
        workspace=tmp_path / "repo", source=action_source, cache_home=act_home,
        env={"SHIPML_PROVIDER": f"cpu\n::add-mask::shipml\n::warning::{token}"})
    assert run.outcome("shipml") == "failure", run.log[-6000:]
    assert "provider" in run.log and token in run.log
    assert_nothing_injected(run, token)


# --- every stage action, for real, then with hostile inputs -------------------------------------

OPTIMIZE = "OWNER/shipml/actions/optimize@v1"
LATENCY = "OWNER/shipml/actions/latency@v1"
REPORT = "OWNER/shipml/actions/report@v1"
BUILD = "OWNER/shipml/actions/build@v1"
SIGN = "OWNER/shipml/actions/sign@v1"
CANARY = "OWNER/shipml/actions/canary@v1"
MONITOR = "OWNER/shipml/actions/monitor@v1"
_QUICK_LATENCY = {"batch_sizes": [1], "max_time_s": 2, "min_runs": 50, "process_time_s": 0.2,
                  "min_processes": 2}


def hostile_values(marker: Path, keep: Path) -> list[str]:
    """Command substitution, backticks, and a quote that closes a string before a command (aimed
    at a throwaway folder, ``keep``, rather than the home folder itself)."""
    return [f"$(touch {marker})", f"`touch {marker}`", f'"; rm -rf {keep};"', f"'; rm -rf {keep}; '"]


def assert_declared_outputs(run: ActRun, step_id: str, action: str, empty: tuple[str, ...] = ()) -> None:
    """Every output ``actions/<action>/action.yml`` declares is set by the step, and only those
    named in ``empty`` (nothing to say on this run, e.g. no comment posted under act) are empty."""
    import yaml

    from tests.actions._act import REPO

    declared = yaml.safe_load((REPO / "actions" / action / "action.yml").read_text(encoding="utf-8"))
    outputs = run.outputs(step_id)
    assert set(outputs) == set(declared["outputs"]), step_id
    assert sorted(name for name, value in outputs.items() if not value) == sorted(empty), (step_id, outputs)


def _hostile_steps(action: str, prefix: str, inputs: list[str], values: list[str]) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{number}", "uses": action, "continue-on-error": True,
             "with": {name: value for name in inputs}}
            for number, value in enumerate(values)]


def _keep(tmp_path: Path) -> Path:
    keep = tmp_path / "keep-me"
    keep.mkdir()
    (keep / "file").write_text("still here")
    return keep


def test_the_pull_request_actions_run_on_the_example_and_hostile_inputs_execute_nothing(
    installed: ActRun, act_home: Path, action_source: Path, tmp_path: Path,
) -> None:
    marker, keep = _pwned(tmp_path), _keep(tmp_path)
    values = hostile_values(marker, keep)
    config = {"model": {"path": "model.onnx", "label": "benign", "train": "train.csv",
                        "test": "test.csv"},
              "validate": {"suites": ["data_integrity"], "warn_only": ["FeatureFeatureCorrelation"]},
              "optimize": {"candidates": ["graph"], "pick": "graph"}, "latency": _QUICK_LATENCY,
              "report": {"title": "wine"}}
    steps: list[dict[str, Any]] = [
        {"id": "validate", "uses": VALIDATE},
        {"id": "optimize", "uses": OPTIMIZE},
        {"id": "latency", "uses": LATENCY,
         "with": {"model": "${{ steps.optimize.outputs.model }}", "baseline": "model.onnx"}},
        {"id": "report", "uses": REPORT, "with": {"title": values[0] + values[1] + values[2]}},
        # production rows as a table: the test set against the training data, the same population
        {"id": "monitor", "uses": MONITOR, "continue-on-error": True,
         "with": {"production": "test.csv", "min-records": "10"}},
        *_hostile_steps(OPTIMIZE, "optimize-h", ["model", "candidates"], values),
        *_hostile_steps(LATENCY, "latency-h", ["model", "provider", "batch-sizes"], values),
        *_hostile_steps(REPORT, "report-h", ["key", "comment-mode", "template-dir"], values),
        *_hostile_steps(MONITOR, "monitor-h", ["production", "since", "on-clear"], values),
    ]
    run = run_workflow(steps, workspace=tmp_path / "repo", source=action_source,
                       cache_home=act_home, config=config)
    assert run.returncode == 0, run.log[-6000:]
    assert run.outputs("validate")["status"] == "pass", run.log[-6000:]
    assert run.outputs("validate")["junit"].endswith("validate.junit.xml")
    optimize = run.outputs("optimize")
    assert (optimize["status"], optimize["chosen"]) == ("pass", "graph")
    assert optimize["model"].endswith(".onnx") and optimize["result"] == ".shipml/results/optimize.json"
    latency = run.outputs("latency")
    assert latency["status"] == "pass" and float(latency["p95-ms"]) > 0
    assert latency["report"].endswith(".html")
    report = run.outputs("report")
    assert report["verdict"] == "pass" and report["comment-url"] == ""
    assert report["markdown"].endswith("report.md") and report["html"].endswith("report.html")
    assert "would post to acme/wine#7" in run.log
    drifted = run.outputs("monitor").get("drifted-features")
    monitor_empty = ("issue-url",) if drifted else ("drifted-features", "issue-url")
    for step_id, empty in (("validate", ()), ("optimize", ()), ("latency", ()),
                           ("report", ("comment-url",)), ("monitor", monitor_empty)):
        assert_declared_outputs(run, step_id, step_id, empty)
    monitor = run.outputs("monitor")
    assert monitor["status"] in ("pass", "fail"), run.log[-6000:]  # judged, whatever the verdict
    assert monitor["result"] == ".shipml/results/monitor.json" and monitor["issue-url"] == ""
    assert monitor["junit"].endswith("monitor.junit.xml")
    assert "shipml monitor: dry run (act): would" in run.log
    for prefix in ("optimize-h", "latency-h", "report-h", "monitor-h"):
        for number in range(len(values)):
            assert run.outcome(f"{prefix}{number}") == "failure", (prefix, number, run.log[-4000:])
    assert not marker.exists()
    assert (keep / "file").read_text() == "still here"


@pytest.mark.docker
def test_the_release_actions_build_push_sign_and_roll_out_and_hostile_inputs_execute_nothing(
    act_home: Path, action_source: Path, tmp_path: Path, service: str, test_key: Path,
) -> None:
    from tests.actions.conftest import KEY_PASSWORD, REGISTRY, release_config

    marker, keep = _pwned(tmp_path), _keep(tmp_path)
    values = hostile_values(marker, keep)
    image = "${{ steps.build.outputs.image }}@${{ steps.build.outputs.digest }}"
    steps: list[dict[str, Any]] = [
        {"id": "build", "uses": BUILD},
        {"id": "sign", "uses": SIGN, "with": {"key": "cosign.key"}},
        # (no public-key pre-flight: the canary extra lacks the verifier's cryptography/pynacl)
        {"id": "canary", "uses": CANARY, "with": {"image": image}},
        *_hostile_steps(BUILD, "build-h", ["image", "runtime", "registry-password"], values),
        *_hostile_steps(SIGN, "sign-h", ["image", "key", "gates"], values),
        *_hostile_steps(CANARY, "canary-h", ["service", "steps", "image"], values),
    ]
    run = run_workflow(
        steps, workspace=tmp_path / "repo", source=action_source, cache_home=act_home,
        event="push", config=release_config(service),
        files={"cosign.key": test_key.read_text(), "cosign.pub": test_key.with_suffix(".pub").read_text()},
        env={"COSIGN_PASSWORD": KEY_PASSWORD})
    assert run.returncode == 0, run.log[-6000:]
    build = run.outputs("build")
    assert build["status"] == "pass", run.log[-6000:]
    assert build["image"] == f"{REGISTRY}/{service}" and build["digest"].startswith("sha256:")
    assert build["tags"] == f"sha-{build['tags'].split(',')[0][4:]},main,latest"
    sign = run.outputs("sign")
    assert sign["status"] == "pass", run.log[-6000:]
    assert sign["digest"] == build["digest"]
    assert sign["signature"] == f"{REGISTRY}/{service}:{build['digest'].replace(':', '-')}.sig"
    assert sign["attestation"].endswith(".att")
    canary = run.outputs("canary")
    assert (canary["status"], canary["outcome"], canary["final-weight"]) == ("pass", "promoted", "100")
    for step_id, empty in (("build", ()), ("sign", ()), ("canary", ("analysis",))):
        assert_declared_outputs(run, step_id, step_id, empty)
    for prefix in ("build-h", "sign-h", "canary-h"):
        for number in range(len(values)):
            assert run.outcome(f"{prefix}{number}") == "failure", (prefix, number, run.log[-4000:])
    assert not marker.exists()
    assert (keep / "file").read_text() == "still here"
