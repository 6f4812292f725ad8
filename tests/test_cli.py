"""The shipml command as a user meets it: help, version, init, demo, subprocess exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shipml.cli import build_parser, main
from shipml.example import example_dir
from tests.conftest import Case


def test_help_lists_only_commands_that_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for command in build_parser()._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
        assert command in out
    for future in ("deploy", "rollout"):
        assert f"    {future} " not in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: shipml" in capsys.readouterr().err


def test_unknown_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["validate", "--modle", "x.onnx"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --modle x.onnx" in capsys.readouterr().err


def test_python_dash_m_and_console_script(tmp_path: Path) -> None:
    version = subprocess.run([sys.executable, "-m", "shipml", "--version"], capture_output=True,
                             text=True, check=True)
    assert version.stdout.startswith("shipml ")
    bad = subprocess.run([sys.executable, "-m", "shipml", "validate", "--model",
                          str(tmp_path / "missing.onnx"), "--suites", "data_integrity"],
                         capture_output=True, text=True, cwd=tmp_path, check=False)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert bad.stderr.startswith("shipml validate: model.label is not set")


def test_init_detects_label_task_and_categoricals(binary_case: Case, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "shipml.yaml"
    code = main(["init", "--model", str(binary_case.model), "--train", str(binary_case.train),
                 "--test", str(binary_case.test), "--output", str(output)])
    assert code == 0
    document = yaml.safe_load(output.read_text())
    assert document["model"]["label"] == "churned"
    assert document["model"]["task"] == "binary"
    assert document["model"]["categorical_features"] == ["plan"]
    assert "wrote" in capsys.readouterr().out
    assert main(["init", "--model", str(binary_case.model), "--train", str(binary_case.train),
                 "--output", str(output)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err


def test_init_multiclass_tensor_model_needs_the_label(multiclass_case: Case, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "shipml.yaml"
    assert main(["init", "--model", str(multiclass_case.model), "--train",
                 str(multiclass_case.train), "--output", str(output)]) == 2
    assert "cannot tell which column is the label; pass --label" in capsys.readouterr().err
    assert main(["init", "--model", str(multiclass_case.model), "--train",
                 str(multiclass_case.train), "--label", "species", "--output", str(output)]) == 0
    assert yaml.safe_load(output.read_text())["model"]["task"] == "multiclass"


@pytest.mark.deepchecks
def test_demo_runs_the_bundled_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--dir", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert code == 0, out
    for stage in ("validate", "optimize", "latency"):
        result = json.loads((tmp_path / "demo" / "results" / f"{stage}.json").read_text())
        assert result["status"] == "pass", (stage, result["summary"])
        assert f"result    {tmp_path / 'demo' / 'results' / f'{stage}.json'}" in out
    # latency measured what optimize kept, against the original as its baseline
    latency = json.loads((tmp_path / "demo" / "results" / "latency.json").read_text())
    assert latency["metrics"]["model"] == str(tmp_path / "demo" / "artifacts" / "model.optimized.onnx")
    assert "ready to ship: 3 of 3 stages passed" in (tmp_path / "demo" / "report" / "report.md").read_text()
    assert "shipml run: validate passed, optimize passed, latency passed, report passed" in out
    assert "shipml demo: all gates passed" in out
    # without --release it ends with the one line that says how to get the release half
    from shipml.commands.demo import RELEASE_HINT

    assert out.rstrip().splitlines()[-1] == RELEASE_HINT
    for name in ("model.onnx", "train.csv", "test.csv", "shipml.yaml"):
        assert (example_dir() / name).is_file()


def test_a_bug_in_a_stage_leaves_an_error_result_and_no_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import shipml.validate.core

    def crash(*_: object) -> None:
        raise KeyError("p95_ms")  # stands in for any bug that escapes a stage

    monkeypatch.setattr(shipml.validate.core, "run_validate", crash)
    output = tmp_path / "github_output"
    output.write_text("")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    code = main(["validate", "--model", "m.onnx", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 3
    assert "Traceback" not in err
    assert "shipml validate: internal error: KeyError: 'p95_ms' — this is a bug in shipml" in err
    result = json.loads((tmp_path / "out" / "results" / "validate.json").read_text())
    assert result["status"] == "error"
    assert result["error"]["kind"] == "internal" and result["error"]["exit_code"] == 3
    assert "status<<" in output.read_text() and "\nerror\n" in output.read_text()


@pytest.mark.parametrize("command", ["validate", "latency", "optimize", "run"])
def test_an_output_dir_that_is_a_file_is_refused_before_any_work(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file")
    code = main([command, "--model", "missing.onnx", "--output-dir", str(blocker)]
                if command != "run" else [command, "--output-dir", str(blocker)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--output-dir: {blocker} cannot hold results: it is a file, not a folder" in err
    assert "Traceback" not in err
    assert blocker.read_text() == "a file"


def test_an_output_dir_that_cannot_be_created_names_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("SHIPML_OUTPUT_DIR", str(tmp_path / "file" / "below"))
    assert main(["validate", "--model", "m.onnx"]) == 2
    assert "environment SHIPML_OUTPUT_DIR: " in capsys.readouterr().err


def test_the_writability_probe_never_collides_with_what_stands_in_results(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The probe was results/.probe-<pid>: two commands in one process (or anything left under
    # that name) collided, and one was refused with "No such file or directory".
    import os

    from shipml.cli import check_output_dir, common_options

    (tmp_path / "out" / "results" / f".probe-{os.getpid()}").mkdir(parents=True)
    args = common_options().parse_args(["--output-dir", str(tmp_path / "out")])
    assert check_output_dir(args) == tmp_path / "out"
    assert sorted(p.name for p in (tmp_path / "out" / "results").iterdir()) == [
        f".probe-{os.getpid()}"]


def test_schema_output_at_a_folder_is_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--output", str(tmp_path)]) == 2
    assert f"--output: {tmp_path} is a folder; name the file to write" in capsys.readouterr().err
    assert main(["schema", "--output", str(tmp_path / "missing" / "s.json")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["schema", "--output", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["properties"]["model"]


# --- a stage stopped by SIGTERM or SIGINT -------------------------------------------------------

#: latency measures for far longer than a test waits: a signal always lands mid-measurement
LONG_LATENCY = {"batch_sizes": [1], "max_time_s": 600, "min_runs": 1_000_000,
                 "process_time_s": 300, "min_processes": 3}
MEASURING = "model.onnx on CPUExecutionProvider"


def project_with(tmp_path: Path, **sections: object) -> Path:
    """The bundled example with ``sections`` replacing its own; return its shipml.yaml."""
    from shipml.example import FILES

    for name in FILES:
        (tmp_path / name).write_bytes((example_dir() / name).read_bytes())
    config = yaml.safe_load((tmp_path / "shipml.yaml").read_text())
    config.update(sections)
    config.pop("report", None)
    (tmp_path / "shipml.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "shipml.yaml"


class Running:
    """A real ``python -m shipml`` process in its own session, its stderr read as it comes."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        import threading

        self.lines: list[str] = []
        self._seen = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shipml", *argv], cwd=cwd, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
        self.process.wait()
        with self._seen:
            self._seen.notify_all()

    def wait_for(self, text: str, timeout_s: float = 300.0) -> None:
        """Block until a line holds ``text``; fail if the process ends first."""
        with self._seen:
            found = self._seen.wait_for(
                lambda: any(text in line for line in self.lines) or self.process.poll() is not None,
                timeout=timeout_s)
        assert found and any(text in line for line in self.lines), "".join(self.lines)

    def stop(self, signum: int, timeout_s: float = 120.0) -> int:
        """Send ``signum`` to the process (not its group); return its exit code once every
        process of its session is gone."""
        import os
        import time

        self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # the measuring children go with their parent
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return code
            time.sleep(0.1)
        raise AssertionError(f"processes of session {self.process.pid} outlived it")

    @property
    def output(self) -> str:
        return "".join(self.lines)


@pytest.mark.parametrize(("signum", "name", "code"), [(15, "SIGTERM", 143), (2, "SIGINT", 130)])
def test_a_latency_stopped_mid_measurement_leaves_a_cancelled_result_and_the_report_says_not_ready(
        tmp_path: Path, signum: int, name: str, code: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    from shipml.results import StageResult

    config = project_with(tmp_path, latency=LONG_LATENCY)  # validate, optimize and latency configured
    out = tmp_path / "out"
    for stage in ("validate", "optimize"):
        StageResult(stage=stage, status="pass", summary=f"{stage} passed",
                    started_at="2026-11-25T10:00:00+00:00", duration_s=1.0).write(out)
    latency = Running(["latency", "--config", str(config), "--output-dir", str(out)], tmp_path)
    latency.wait_for(MEASURING)
    assert latency.stop(signum) == code, latency.output
    assert "Traceback" not in latency.output
    assert f"shipml latency: cancelled by {name} before it finished" in latency.output
    result = StageResult.read(out / "results" / "latency.json")
    assert result.status == "error" and result.error is not None
    assert (result.error.kind, result.error.exit_code) == ("cancelled", code)
    assert sorted(p.name for p in (out / "results").iterdir()) == [
        "latency.json", "optimize.json", "validate.json"]  # no .tmp left behind

    assert main(["report", "--config", str(config), "--output-dir", str(out),
                 "--fail-on", "fail"]) == 1
    printed = capsys.readouterr().out
    assert "ready to ship" not in printed.replace("not ready to ship", "")
    report = (out / "report" / "report.md").read_text()
    assert "not ready to ship: latency cancelled" in report
    assert f"latency stopped: cancelled** (exit {code})" in report


def test_a_latency_killed_without_a_result_is_missing_from_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shipml.results import StageResult

    config = project_with(tmp_path, latency=LONG_LATENCY)
    out = tmp_path / "out"
    StageResult(stage="validate", status="pass", summary="41/41 conditions passed",
                started_at="2026-11-25T10:00:00+00:00", duration_s=1.0).write(out)
    latency = Running(["latency", "--config", str(config), "--output-dir", str(out)], tmp_path)
    latency.wait_for(MEASURING)
    assert latency.stop(9) == -9  # SIGKILL: nothing can be written
    assert not (out / "results" / "latency.json").exists()

    assert main(["report", "--config", str(config), "--output-dir", str(out)]) == 0
    report = (out / "report" / "report.md").read_text()
    assert "not ready to ship: optimize, latency missing" in report
    assert "**latency: missing** (configured, but no result)" in report
    assert "41/41 conditions passed" in report
    assert "ERROR — not ready to ship: optimize, latency missing" in capsys.readouterr().out


# --- every file a stage writes is checked before its work ---------------------------------------

@pytest.mark.parametrize(("command", "blocked", "how", "problem"), [
    ("latency", "results/latency.json", "folder", "shipml latency writes its result there, but "
                                                  "it is a folder"),
    ("latency", "artifacts/latency.html", "folder", "shipml latency writes a file there, but it "
                                                    "is a folder"),
    ("latency", "artifacts", "file", "shipml latency writes the folder of latency.html there, "
                                     "but it is a file"),
    ("validate", "artifacts/validate.junit.xml", "folder", "shipml validate writes a file there, "
                                                            "but it is a folder"),
    ("optimize", "artifacts/optimize", "file", "shipml optimize writes a folder there, but it "
                                               "is a file"),
    ("report", "report/report.md", "folder", "shipml report writes a file there, but it is a "
                                             "folder"),
])
def test_a_file_a_stage_will_write_that_cannot_be_written_is_exit_2_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, blocked: str,
        how: str, problem: str) -> None:
    from shipml.results import StageResult

    config = project_with(tmp_path, latency=LONG_LATENCY)
    out = tmp_path / "out"
    StageResult(stage="validate", status="pass", summary="passed",
                started_at="2026-11-25T10:00:00+00:00", duration_s=1.0).write(out)
    target = out / blocked
    if how == "folder":
        target.mkdir(parents=True)
        (target / "keep").write_text("a user's file")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("a user's file")
    code = main([command, "--config", str(config), "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{target}: {problem}" in err
    assert "remove or rename it, or choose another --output-dir" in err
    assert MEASURING not in err and "internal error" not in err
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert (target / "keep").is_file() if how == "folder" else target.read_text() == "a user's file"


def _without(tmp_path: Path, module: str) -> dict[str, str]:
    """Return an environment in which importing ``module`` fails as it does when its
    distribution is not installed: a package of that name first on PYTHONPATH raises
    ModuleNotFoundError, whatever the venv holds."""
    shadow = tmp_path / "shadow" / module
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n",
        encoding="utf-8")
    return {**os.environ, "PYTHONPATH": str(tmp_path / "shadow"), "COSIGN_PASSWORD": "not-a-secret"}


@pytest.mark.parametrize(("module", "argv", "extra"), [
    ("docker", ["canary", "status"], "canary"),
    ("docker", ["build", "--model", "model.onnx"], "build"),
    # nacl comes from pynacl, in both sign and canary: keygen is told the smaller one
    ("nacl", ["keygen", "--output-key-prefix", "cosign"], "sign"),
])
def test_a_command_whose_extra_is_missing_exits_2_with_the_pip_line(
        tmp_path: Path, module: str, argv: list[str], extra: str) -> None:
    (tmp_path / "model.onnx").write_bytes((example_dir() / "model.onnx").read_bytes())
    (tmp_path / "shipml.yaml").write_text(
        "build:\n  image: 127.0.0.1:5000/never/pushed\n  tags: [{type: raw, value: dev}]\n",
        encoding="utf-8")
    completed = subprocess.run([sys.executable, "-m", "shipml", *argv, "--output-dir", "out"],
                               env=_without(tmp_path, module), cwd=tmp_path, capture_output=True,
                               text=True, check=False)
    command = argv[0]
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr == (
        f"shipml {command}: {module} is not installed: shipml {command} needs shipml[{extra}]; "
        f'add it with\n  pip install "shipml[{extra}]"\n')
    if command in ("canary", "build"):
        result = json.loads((tmp_path / "out" / "results" / f"{command}.json").read_text())
        assert result["error"]["kind"] == "config" and result["error"]["exit_code"] == 2


def test_a_missing_module_no_extra_provides_is_still_a_bug(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import shipml.validate.core

    def crash(*_: object) -> None:
        raise ModuleNotFoundError("No module named 'shipml_helpers'", name="shipml_helpers")

    monkeypatch.setattr(shipml.validate.core, "run_validate", crash)
    code = main(["validate", "--model", "m.onnx", "--output-dir", str(tmp_path / "out")])
    assert code == 3
    assert ("shipml validate: internal error: ModuleNotFoundError: No module named 'shipml_helpers'"
            in capsys.readouterr().err)


def test_the_extras_come_from_the_package_metadata() -> None:
    from shipml.cli import extra_providing

    assert extra_providing("deepchecks.tabular", "monitor") == "validate"
    assert extra_providing("docker", "run") == "build"  # the smaller of build and canary
    assert extra_providing("prometheus_client", "serve") == "serve"
    assert extra_providing("kubernetes_validate", "run") == "canary"
    assert extra_providing("shipml_helpers", "canary") is None


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.metadata

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"shipml {importlib.metadata.version('shipml')}\n"
