"""``shipml run``: stage selection, chaining optimize into latency, and what stops the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from shipml import stages
from shipml.cli import main
from shipml.commands.run import (
    Event,
    act_dry_run,
    choose_event,
    detect_event,
    handoff_flags,
    is_loopback_registry,
    select_stages,
)
from shipml.config import load_config
from shipml.errors import ConfigError
from shipml.example import FILES, example_dir
from shipml.results import Handoff, StageResult


def test_stages_default_to_the_sections_in_the_config() -> None:
    assert select_stages(None, ["latency", "validate"], "--stages") == ["validate", "latency", "report"]
    assert select_stages(None, [], "--stages") == ["validate", "report"]
    assert select_stages(None, ["optimize", "model", "report"], "--stages") == ["optimize", "report"]


def test_an_explicit_list_that_names_no_stage_is_an_error() -> None:
    with pytest.raises(ConfigError) as error:
        select_stages(" , ", ["optimize"], "--stages")
    assert error.value.message.startswith("--stages: names no stage; give a comma-separated list")


def test_explicit_stages_run_in_pipeline_order() -> None:
    assert select_stages("report, latency", ["validate"], "--stages") == ["latency", "report"]


def test_unknown_stage_names_the_source_and_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as error:
        select_stages("validate,lantecy", [], "environment SHIPML_STAGES")
    assert error.value.message == ("environment SHIPML_STAGES: unknown stage 'lantecy'; valid stages: "
                                   + ", ".join(stages.pipeline()))
    assert "serve" not in stages.pipeline()  # runs until stopped: never a pipeline stage


def _example(tmp_path: Path, **sections: object) -> Path:
    for name in FILES:
        shutil.copy2(example_dir() / name, tmp_path / name)
    config = yaml.safe_load((tmp_path / "shipml.yaml").read_text())
    config.update(sections)
    (tmp_path / "shipml.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "shipml.yaml"


_QUICK_LATENCY = {"batch_sizes": [1], "max_time_s": 2, "min_runs": 50, "process_time_s": 0.2,
                  "min_processes": 2}


def test_latency_measures_the_model_optimize_kept(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = _example(tmp_path, optimize={"candidates": ["graph"], "pick": "graph"},
                      latency=_QUICK_LATENCY)
    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)
    (out / "results" / "latency.json").write_text("stale")  # removed before the stage runs
    code = main(["run", "--config", str(config), "--output-dir", str(out),
                 "--stages", "optimize,latency,report"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    optimize = json.loads((out / "results" / "optimize.json").read_text())
    latency = json.loads((out / "results" / "latency.json").read_text())
    assert optimize["metrics"]["chosen"] == "graph"
    assert latency["metrics"]["model"] == optimize["metrics"]["output"]
    assert not (out / "results" / "validate.json").exists()
    assert (out / "report" / "report.md").is_file()
    assert "shipml run: optimize passed, latency passed, report passed" in printed


def test_a_configured_latency_model_is_not_replaced(tmp_path: Path) -> None:
    config = _example(tmp_path, optimize={"candidates": ["graph"], "pick": "graph"},
                      latency={**_QUICK_LATENCY, "model": "model.onnx"})
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--output-dir", str(out),
                 "--stages", "optimize,latency"]) == 0
    latency = json.loads((out / "results" / "latency.json").read_text())
    assert latency["metrics"]["model"] == str(tmp_path / "model.onnx")


def test_bad_input_stops_the_gates_and_report_still_publishes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _example(tmp_path, optimize={"candidates": ["graph"], "pick": "graph",
                                          "model": "missing.onnx"},
                      latency=_QUICK_LATENCY)
    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)
    # a result from an earlier job (e.g. a downloaded artifact) of a stage not run now is kept
    StageResult(stage="validate", status="pass", summary="41/41 conditions passed",
                started_at="2026-11-25T10:00:00+00:00", duration_s=9.5).write(out)
    code = main(["run", "--config", str(config), "--output-dir", str(out),
                 "--stages", "optimize,latency,report"])
    captured = capsys.readouterr()
    assert code == 2
    assert "missing.onnx" in captured.err
    assert "latency not run: optimize bad input" in captured.err
    latency = StageResult.read(out / "results" / "latency.json")
    assert (latency.status, latency.summary) == ("skipped", "not run: optimize bad input")
    assert (out / "report" / "report.md").is_file()
    assert "shipml run: optimize bad input, report passed; not run: latency" in captured.out
    optimize = json.loads((out / "results" / "optimize.json").read_text())
    assert optimize["status"] == "error" and "missing.onnx" in optimize["summary"]
    report = (out / "report" / "report.md").read_text()
    assert "41/41 conditions passed" in report
    assert "not ready to ship: optimize stopped with a configuration error" in report
    assert "missing.onnx" in report


def test_a_config_that_does_not_load_still_ends_in_an_error_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "shipml.yaml"
    config.write_text("model:\n  path: model.onnx\nvalidate:\n  fail_onn: warn\n")
    outputs = tmp_path / "github_output"
    outputs.write_text("")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    out = tmp_path / "out"
    StageResult(stage="validate", status="pass", summary="an earlier run passed",
                started_at="2026-11-25T10:00:00+00:00", duration_s=1.0).write(out)
    code = main(["run", "--config", str(config), "--output-dir", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err
    assert "unknown key 'validate.fail_onn'; did you mean 'fail_on'?" in captured.out
    validate = StageResult.read(out / "results" / "validate.json")
    assert validate.status == "error" and validate.error is not None
    assert validate.error.kind == "config" and validate.error.exit_code == 2
    report = (out / "report" / "report.md").read_text()
    assert "not ready to ship" in report and "fail_onn" in report
    assert "an earlier run passed" not in report
    written = outputs.read_text()
    assert "status<<" in written and "\nerror\n" in written


def test_the_report_publishes_the_error_results_when_its_own_config_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "shipml.yaml"
    config.write_text("report:\n  titel: x\n")
    out = tmp_path / "out"
    assert main(["validate", "--config", str(config), "--output-dir", str(out)]) == 2
    assert main(["report", "--config", str(config), "--output-dir", str(out)]) == 2
    assert "unknown key 'report.titel'" in capsys.readouterr().err
    assert "not ready to ship: validate stopped with a configuration error" in \
        (out / "report" / "report.md").read_text()


# --- the event decides the half -----------------------------------------------------------------


def test_a_release_runs_the_written_gates_then_build_sign_and_the_configured_rollout() -> None:
    assert select_stages(None, ["latency", "canary"], "--stages", "release") == [
        "latency", "build", "sign", "canary", "report"]
    assert select_stages(None, ["model"], "--stages", "release") == [
        "validate", "build", "sign", "report"]
    assert select_stages(None, ["validate", "canary"], "--stages", "release", rollout=False) == [
        "validate", "build", "sign", "report"]
    # a pull request never builds, whatever sections are written
    assert select_stages(None, ["validate", "build", "sign", "canary"], "--stages") == [
        "validate", "report"]
    # --stages wins over the event
    assert select_stages("validate,canary", [], "--stages", "pull_request") == ["validate", "canary"]


def _github(tmp_path: Path, name: str, ref: str, default_branch: str | None = "trunk") -> dict[str, str]:
    payload: dict[str, object] = {"repository": {"full_name": "acme/wine"}}
    if default_branch:
        payload["repository"] = {"full_name": "acme/wine", "default_branch": default_branch}
    event = tmp_path / "event.json"
    event.write_text(json.dumps(payload))
    return {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": name, "GITHUB_REF": ref,
            "GITHUB_EVENT_PATH": str(event)}


@pytest.mark.parametrize(("name", "ref", "half"), [
    ("pull_request", "refs/pull/7/merge", "pull_request"),
    ("pull_request_target", "refs/heads/trunk", "pull_request"),
    ("push", "refs/heads/trunk", "release"),
    ("push", "refs/tags/v1.2.0", "release"),
    ("push", "refs/heads/feature", "pull_request"),
    ("workflow_dispatch", "refs/heads/trunk", "release"),
    ("schedule", "refs/heads/trunk", "pull_request"),
])
def test_github_events_choose_the_half(tmp_path: Path, name: str, ref: str, half: str) -> None:
    assert detect_event(_github(tmp_path, name, ref)).half == half


def test_github_push_without_a_default_branch_in_the_payload_uses_the_configured_one(
        tmp_path: Path) -> None:
    environ = _github(tmp_path, "push", "refs/heads/release", default_branch=None)
    assert detect_event(environ, "release").half == "release"
    event = detect_event(environ)
    assert event == Event("pull_request", "GitHub push to release, not the default branch main")


@pytest.mark.parametrize(("environ", "half", "reason"), [
    ({"CHANGE_ID": "7", "BRANCH_NAME": "PR-7"}, "pull_request", "Jenkins change request 7"),
    ({"TAG_NAME": "v1.0.0", "BRANCH_NAME": "v1.0.0"}, "release", "Jenkins build of tag v1.0.0"),
    ({"BRANCH_NAME": "main"}, "release", "Jenkins build of the default branch main"),
    ({"BRANCH_NAME": "feature"}, "pull_request", "Jenkins build of feature"),
])
def test_jenkins_builds_choose_the_half(environ: dict[str, str], half: str, reason: str) -> None:
    assert detect_event({"JENKINS_URL": "http://jenkins.example.invalid/", **environ}) == Event(half, reason)


def test_the_flag_beats_the_variable_beats_the_ci(tmp_path: Path) -> None:
    pull = _github(tmp_path, "pull_request", "refs/pull/7/merge")
    assert choose_event("push", {**pull, "SHIPML_EVENT": "pull_request"}).half == "release"
    assert choose_event(None, {**pull, "SHIPML_EVENT": "push"}) == Event(
        "release", "environment SHIPML_EVENT push")
    assert choose_event(None, {}).half == "pull_request"  # a laptop: the gates
    with pytest.raises(ConfigError) as error:
        choose_event(None, {"SHIPML_EVENT": "merge"})
    assert error.value.message == ("environment SHIPML_EVENT: 'merge' is not an event; valid: "
                                   "pull_request, push")


# --- a failed gate stops the release and still reports ------------------------------------------

_IMPOSSIBLE_LATENCY = {**_QUICK_LATENCY, "budgets": {"1": {"p95_ms": 0.000001}}}


def test_on_a_push_a_failed_gate_stops_build_sign_and_the_rollout_and_still_reports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = _example(tmp_path, latency=_IMPOSSIBLE_LATENCY,
                      build={"image": "127.0.0.1:5000/never-built"}, canary={"service": "wine"})
    for name in ("validate", "optimize"):
        yaml_config = yaml.safe_load(config.read_text())
        yaml_config.pop(name, None)
        config.write_text(yaml.safe_dump(yaml_config))
    outputs = tmp_path / "github_output"
    outputs.write_text("")
    monkeypatch.setenv("SHIPML_CI", "github")
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setenv("GITHUB_EVENT_NAME", "push")
    monkeypatch.setenv("GITHUB_REF", "refs/tags/v1.0.0")
    out = tmp_path / "out"
    code = main(["run", "--config", str(config), "--output-dir", str(out)])
    captured = capsys.readouterr()
    assert code == 1, captured.out + captured.err
    assert ("shipml run: the release half (GitHub push of tag v1.0.0): latency, build, sign, "
            "canary, report") in captured.out
    assert "shipml run: latency failed, report passed; not run: build, sign, canary" in captured.out
    for stage in ("build", "sign", "canary"):
        skipped = StageResult.read(out / "results" / f"{stage}.json")
        assert (skipped.status, skipped.summary) == ("skipped", "not run: latency failed")
    report = (out / "report" / "report.md").read_text()
    assert "not run: latency failed" in report
    assert _last(outputs, "status") == "fail"
    assert _last(outputs, "verdict") == "fail"
    assert _last(outputs, "half") == "release"
    assert _last(outputs, "rollout") == "not-run"
    assert _last(outputs, "image") == _last(outputs, "digest") == ""
    assert _last(outputs, "canary-status") == "skipped"
    assert _last(outputs, "report") == str(out / "report" / "report.md")


def _last(path: Path, name: str) -> str:
    """The value a step output ends with: the runner keeps the last one written."""
    lines = path.read_text().splitlines()
    value = ""
    for index, line in enumerate(lines):
        if line.startswith(f"{name}<<"):
            delimiter = line.split("<<", 1)[1]
            end = lines.index(delimiter, index + 1)
            value = "\n".join(lines[index + 1:end])
    return value


def test_on_a_pull_request_a_failed_gate_stops_the_later_gates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = _example(tmp_path, validate={"suites": [], "pytest": "model_tests"},
                      latency=_QUICK_LATENCY)
    written = yaml.safe_load(config.read_text())
    del written["optimize"]
    config.write_text(yaml.safe_dump(written))
    (tmp_path / "model_tests").mkdir()
    (tmp_path / "model_tests" / "test_model.py").write_text(
        "def test_the_team_expects_more() -> None:\n    assert 0.5 > 0.9\n")
    monkeypatch.setenv("SHIPML_EVENT", "pull_request")
    out = tmp_path / "out"
    code = main(["run", "--config", str(config), "--output-dir", str(out)])
    printed = capsys.readouterr().out
    assert code == 1, printed
    assert "the pull-request half (environment SHIPML_EVENT pull_request): validate, latency, report" \
        in printed
    assert StageResult.read(out / "results" / "validate.json").status == "fail"
    latency = StageResult.read(out / "results" / "latency.json")
    assert (latency.status, latency.summary) == ("skipped", "not run: validate failed")
    assert "not ready to ship" in (out / "report" / "report.md").read_text()


# --- the dry run under act ----------------------------------------------------------------------


@pytest.mark.parametrize(("image", "loopback"), [
    ("127.0.0.1:5000/wine", True), ("localhost:5000/acme/wine", True), ("localhost/wine", True),
    ("127.1.2.3/wine:v1", True), ("[::1]:5000/wine", True),
    ("ghcr.io/acme/wine", False), ("acme/wine", False), ("wine", False),
    ("127.0.0.1.example.com/wine", False), ("10.0.0.5:5000/wine", False),
])
def test_loopback_registries(image: str, loopback: bool) -> None:
    assert is_loopback_registry(image) is loopback


def test_under_act_a_remote_image_is_built_not_pushed_nor_signed_and_kubernetes_is_not_a_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path = _example(tmp_path, build={"image": "ghcr.io/acme/wine"},
                           canary={"target": {"type": "kubernetes"}})
    config = load_config(config_path)
    out = tmp_path / "out"
    for name in ("SHIPML_IMAGE", "SHIPML_SIGN_IMAGE", "SHIPML_KEYLESS", "SHIPML_CANARY_TARGET",
                 "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert act_dry_run("build", config, out, {}).flags == ("--no-push",)
    assert act_dry_run("sign", config, out, {}).skip.startswith(
        "dry run under act: would sign the built image; only an image on a loopback registry")
    assert act_dry_run("canary", config, out, {}).skip == (
        "dry run under act: would roll out to the kubernetes target; only the local Docker "
        "Engine is a target")
    monkeypatch.setenv("SHIPML_IMAGE", "127.0.0.1:5000/wine")
    monkeypatch.setenv("SHIPML_SIGN_IMAGE", "127.0.0.1:5000/wine@sha256:" + "a" * 64)
    monkeypatch.setenv("SHIPML_CANARY_TARGET", "docker")
    assert act_dry_run("build", config, out, {}).flags == ()
    assert act_dry_run("sign", config, out, {}).flags == ("--no-tlog",)
    assert act_dry_run("canary", config, out, {}) == act_dry_run("report", config, out, {})
    monkeypatch.setenv("SHIPML_KEYLESS", "true")
    assert "keyless signing" in act_dry_run("sign", config, out, {}).skip
    monkeypatch.setenv("DOCKER_HOST", "tcp://build-host.example.invalid:2376")
    assert "tcp://build-host.example.invalid:2376" in act_dry_run("canary", config, out, {}).skip


def test_under_act_a_bad_variable_leaves_the_stage_to_say_so_not_the_run_to_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # it was a ConfigError out of the loop: no result for sign, no report, exit 2 with no verdict
    config = load_config(_example(tmp_path))
    monkeypatch.setenv("SHIPML_KEYLESS", "maybe")
    assert act_dry_run("sign", config, tmp_path / "out", {}) == act_dry_run("report", config,
                                                                            tmp_path / "out", {})
    monkeypatch.setenv("SHIPML_KEYLESS", "yes")
    assert "keyless signing" in act_dry_run("sign", config, tmp_path / "out", {}).skip
    # no image named: build runs as it is and says what is missing
    monkeypatch.delenv("SHIPML_IMAGE", raising=False)
    assert config.section("build")["image"] is None
    assert act_dry_run("build", config, tmp_path / "out", {}).flags == ()


# --- hand-offs ----------------------------------------------------------------------------------

_ID = "sha256:" + "1" * 64
_MANIFEST = "sha256:" + "2" * 64


def _built(out: Path, ref: str, digest: str) -> None:
    StageResult(stage="build", status="pass", summary="built", started_at="", duration_s=1.0,
                handoff=(Handoff("image", ref=ref, digest=digest),)).write(out)


def test_run_hands_canary_the_id_of_an_image_build_did_not_push(tmp_path: Path) -> None:
    # canary itself rolls out the id build handed on; shipml run handed it REPOSITORY:TAG, a tag
    # that may name another image by the time canary runs
    config = load_config(_example(tmp_path))
    out = tmp_path / "out"
    _built(out, "127.0.0.1:5000/wine:v1", _ID)
    assert handoff_flags("canary", config, out, {"build": 0}) == ["--image", _ID]
    assert handoff_flags("canary", config, out, {"build": 1}) == []
    assert handoff_flags("canary", config, out, {}) == []
    _built(out, f"127.0.0.1:5000/wine@{_MANIFEST}", _MANIFEST)
    assert handoff_flags("canary", config, out, {"build": 0}) == [
        "--image", f"127.0.0.1:5000/wine@{_MANIFEST}"]
    assert handoff_flags("sign", config, out, {"build": 0}) == [
        "--image", f"127.0.0.1:5000/wine@{_MANIFEST}"]


@pytest.mark.parametrize("handed", [True, False])
def test_sign_refuses_an_image_build_did_not_push_naming_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], handed: bool) -> None:
    # sign pinned REPOSITORY:TAG to the local image id, a manifest no registry holds
    config = _example(tmp_path)
    out = tmp_path / "out"
    _built(out, "127.0.0.1:5000/wine:v1", _ID)
    given = [] if handed else ["--image", _ID]
    assert main(["sign", "--config", str(config), "--output-dir", str(out), *given]) == 2
    where = "the build hand-off (127.0.0.1:5000/wine:v1)" if handed else "--image"
    assert (f"{where}: {_ID} is a local image id, an image built but not pushed; sign needs it "
            "in a registry: push it (build.push: true, the default) and give "
            "REGISTRY/REPOSITORY@sha256:DIGEST") in capsys.readouterr().err


def test_canary_refuses_to_verify_an_image_build_did_not_push_naming_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the pre-flight read the image id as docker.io/library/sha256:<hex> and asked Docker Hub
    from shipml.sign.keys import generate_key_pair

    _, public = generate_key_pair("")
    (tmp_path / "cosign.pub").write_bytes(public)
    config = _example(tmp_path, canary={"service": "wine", "public_key": "cosign.pub"})
    out = tmp_path / "out"
    _built(out, "127.0.0.1:5000/wine:v1", _ID)
    assert main(["canary", "--config", str(config), "--output-dir", str(out)]) == 2
    assert (f"canary.public_key: the image to roll out, {_ID}, is a local image id (built but "
            "not pushed): no registry holds a signature of it to verify; push it (build.push: "
            "true, the default) and sign it, or leave canary.public_key unset"
            ) in capsys.readouterr().err


def test_the_outputs_the_registry_declares_are_the_all_in_one_actions() -> None:
    action = yaml.safe_load((Path(__file__).parents[1] / "action.yml").read_text())
    declared = {row.name for stage in stages.STAGES for row in stage.outputs}
    assert declared == {"image", "digest", "rollout", "report"}
    assert declared | {f"{gate}-status" for gate in stages.pipeline() if gate in stages.gates()} \
        <= set(action["outputs"])


@pytest.mark.parametrize(("signum", "name", "code"), [(15, "SIGTERM", 143), (2, "SIGINT", 130)])
def test_a_signal_during_latency_stops_the_run_which_still_reports_what_ran(
        tmp_path: Path, signum: int, name: str, code: int) -> None:
    from tests.test_cli import LONG_LATENCY, MEASURING, Running, project_with

    config = project_with(tmp_path, latency=LONG_LATENCY)
    out = tmp_path / "out"
    run = Running(["run", "--config", str(config), "--output-dir", str(out),
                   "--stages", "latency,report"], tmp_path)
    run.wait_for(MEASURING)
    assert run.stop(signum) == code, run.output
    assert "Traceback" not in run.output
    assert f"shipml latency: cancelled by {name} before it finished" in run.output
    assert f"shipml run: latency cancelled ({name}), report passed" in run.output
    latency = StageResult.read(out / "results" / "latency.json")
    assert latency.error is not None
    assert (latency.status, latency.error.kind, latency.error.exit_code) == (
        "error", "cancelled", code)
    report = (out / "report" / "report.md").read_text()
    # validate and optimize are configured too: never run here, so missing
    assert "not ready to ship: validate, optimize missing; latency cancelled" in report


@pytest.mark.parametrize(("content", "problem"), [
    (b"[" * 100_000, "nests arrays or objects too deeply"),
    (b'{"repository": {"default_branch": "ma\xffin"}}', "is not UTF-8 text"),
    (b'{"repository": {"default_branch": ["main"]}}',
     "has repository.default_branch as a JSON array, not a string"),
])
def test_a_bad_event_file_on_a_push_is_exit_2_naming_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        content: bytes, problem: str) -> None:
    event = tmp_path / "event.json"
    event.write_bytes(content)
    for name, value in {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push",
                        "GITHUB_REF": "refs/heads/main", "GITHUB_EVENT_PATH": str(event),
                        "GITHUB_REPOSITORY": "octo/models"}.items():
        monkeypatch.setenv(name, value)
    config = _example(tmp_path, latency=_QUICK_LATENCY)
    code = main(["run", "--config", str(config), "--output-dir", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2
    assert f"environment GITHUB_EVENT_PATH: {event} {problem}" in captured.out
    assert "internal error" not in captured.err and "Traceback" not in captured.err
