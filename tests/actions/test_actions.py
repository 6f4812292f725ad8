"""The GitHub Actions layer: zizmor, the structural rules of style.md, and the actions run as the
runner runs them (tests/actions/_runner.py), hostile inputs included.

The slow tests share one real install: the setup action pip-installs this checkout with the
validate extra into a fresh venv under a session RUNNER_TEMP (about a minute with a warm pip cache);
every later action run in the session finds that venv ready and skips pip, as a second stage in one
GitHub job does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.actions._runner import ActionRun, load_action, parse_output_file, run_action

REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO / "actions" / "setup" / "setup.sh"
EXAMPLE = REPO / "scripts" / "shipml" / "example"
ACTION_DIRS = sorted([REPO, *(path.parent for path in (REPO / "actions").glob("*/action.yml"))])
WORKFLOW_TEMPLATES = sorted((REPO / "workflow-templates").glob("*.yml"))

_PINNED_USES = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
_VERSION_COMMENT = re.compile(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
_KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_INPUT_REFERENCE = re.compile(r"\binputs\.([\w-]+)")
#: keys of a step, other than `env:` of a `run:` step, that may read an input
_STEP_KEYS_FOR_INPUTS = ("working-directory", "with", "if")
#: the only owner whose actions the templates may reference by tag (see shipml-pr.yml)
_OWN_ACTIONS = re.compile(r"^OWNER/shipml(/[\w./-]+)?@v\d+$")


def _zizmor() -> str:
    found = shutil.which("zizmor") or str(Path(sys.executable).with_name("zizmor"))
    assert Path(found).exists(), "zizmor is a dev dependency: pip install -e '.[dev]'"
    return found


def _zizmor_paths() -> list[str]:
    # zizmor collects workflows from .github/workflows/ only: templates must be named one by one.
    return ["action.yml", "actions/", *(str(p.relative_to(REPO)) for p in WORKFLOW_TEMPLATES)]


def _steps(action_dir: Path) -> list[dict[str, Any]]:
    steps = load_action(action_dir)["runs"]["steps"]
    assert isinstance(steps, list)
    return steps


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(REPO)) or "." for path in paths]


# --- zizmor -------------------------------------------------------------------------------------


def test_zizmor_reports_nothing() -> None:
    completed = subprocess.run(
        [_zizmor(), "--offline", "--no-progress", "--format", "json", *_zizmor_paths()],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert json.loads(completed.stdout) == []
    for template in WORKFLOW_TEMPLATES:
        assert f"completed {template.relative_to(REPO)}" in completed.stderr


def test_the_only_zizmor_ignore_is_shipml_own_tag_in_the_templates() -> None:
    # With ignore comments disabled, the only findings may be the templates' own
    # `OWNER/shipml...@v1`, which users copy as the README documents; every third-party action is
    # pinned to a full commit SHA, and the actions themselves need no exception at all.
    completed = subprocess.run(
        [_zizmor(), "--offline", "--no-progress", "--no-ignores", "--format", "json",
         *_zizmor_paths()],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    findings = json.loads(completed.stdout)
    assert findings, "expected the templates' own-tag uses to be flagged without the ignore"
    for finding in findings:
        location = finding["locations"][0]
        local = location["symbolic"]["key"]["Local"]
        path = local.get("verbatim_path") or local["given_path"]
        feature = location["concrete"]["feature"]
        uses = [line.split("uses:", 1)[1].split("#", 1)[0].strip()
                for line in feature.splitlines() if "uses:" in line]
        assert finding["ident"] == "unpinned-uses", finding["ident"]
        assert path.startswith("workflow-templates/"), path
        assert uses and all(_OWN_ACTIONS.match(use) for use in uses), uses


# --- structure ----------------------------------------------------------------------------------


def test_every_action_is_found() -> None:
    names = _ids(ACTION_DIRS)
    assert {".", "actions/setup", "actions/validate"} <= set(names)


@pytest.mark.parametrize("action_dir", ACTION_DIRS, ids=_ids(ACTION_DIRS))
def test_action_is_a_thin_composite(action_dir: Path) -> None:
    action = load_action(action_dir)
    assert action["runs"]["using"] == "composite"
    assert action.get("name") and action.get("description")
    for name in action.get("inputs") or {}:
        assert _KEBAB.match(name), f"input {name!r} is not kebab-case"
    for number, step in enumerate(_steps(action_dir)):
        assert ("run" in step) != ("uses" in step), f"step {number}: exactly one of run/uses"
        if "run" in step:
            assert step.get("shell") == "bash"
            assert "${{" not in step["run"], f"step {number}: an expression inside run:"
            assert "if" not in step, f"step {number}: no logic in YAML"
            for name in step.get("env") or {}:
                assert name.startswith("SHIPML_"), f"step {number}: env {name} is not SHIPML_*"


@pytest.mark.parametrize("action_dir", ACTION_DIRS, ids=_ids(ACTION_DIRS))
def test_every_input_reaches_run_steps_only_through_shipml_env(action_dir: Path) -> None:
    action = load_action(action_dir)
    referenced: set[str] = set()
    for number, step in enumerate(_steps(action_dir)):
        for key, value in step.items():
            names = set(_INPUT_REFERENCE.findall(yaml.safe_dump(value)))
            if not names:
                continue
            if key == "env":
                for env_name, env_value in value.items():
                    if _INPUT_REFERENCE.search(str(env_value)):
                        assert env_name.startswith("SHIPML_"), f"step {number}: {env_name}"
                        assert re.fullmatch(r"\$\{\{ inputs\.[\w-]+ \}\}", str(env_value)), (
                            f"step {number}: {env_name} must be exactly one input")
            else:
                assert key in _STEP_KEYS_FOR_INPUTS, f"step {number}: inputs used in {key}:"
                assert key == "working-directory" or "uses" in step, f"step {number}: {key}:"
            referenced |= names
    assert referenced == set(action.get("inputs") or {}), "declared and used inputs differ"


@pytest.mark.parametrize("action_dir", ACTION_DIRS, ids=_ids(ACTION_DIRS))
def test_third_party_actions_are_pinned_by_full_sha_with_version(action_dir: Path) -> None:
    raw_lines = (action_dir / "action.yml").read_text(encoding="utf-8").splitlines()
    for step in _steps(action_dir):
        if "uses" not in step:
            continue
        assert _PINNED_USES.match(step["uses"]), step["uses"]
        line = next(line for line in raw_lines if step["uses"] in line)
        assert _VERSION_COMMENT.search(line), f"no `# vX.Y.Z` comment: {line.strip()}"


def test_pins_agree_across_actions_and_templates() -> None:
    pins: dict[str, set[str]] = {}
    files = [d / "action.yml" for d in ACTION_DIRS] + WORKFLOW_TEMPLATES
    for file in files:
        for match in re.finditer(r"uses: ([\w.-]+/[\w.-]+)[\w./-]*@([0-9a-f]{40}) # (v[\d.]+)",
                                 file.read_text(encoding="utf-8")):
            pins.setdefault(match[1], set()).add(f"{match[2]} {match[3]}")
    assert pins, "no pinned actions found"
    assert {repo: len(found) for repo, found in pins.items()} == {repo: 1 for repo in pins}


def test_validate_action_maps_every_variable_the_cli_reads() -> None:
    from shipml.validate.cli import ENVIRONMENT

    stage = next(s for s in _steps(REPO / "actions" / "validate") if "run" in s and "validate" in s["run"])
    assert set(ENVIRONMENT) | {"SHIPML_CONFIG", "SHIPML_OUTPUT_DIR"} <= set(stage["env"])
    outputs = load_action(REPO / "actions" / "validate")["outputs"]
    assert {"status", "result", "report", "junit"} <= set(outputs)


def test_top_level_action_runs_the_pipeline_with_every_input_wired() -> None:
    from shipml.validate.cli import ENVIRONMENT

    stage = next(s for s in _steps(REPO) if s.get("id") == "shipml")
    assert stage["run"] == '"$SHIPML_EXECUTABLE" run'
    assert set(ENVIRONMENT) | {"SHIPML_CONFIG", "SHIPML_OUTPUT_DIR", "SHIPML_STAGES",
                               "SHIPML_BASELINE_REF", "SHIPML_GITHUB_TOKEN"} <= set(stage["env"])
    outputs = load_action(REPO)["outputs"]
    assert {"status", "validate-status", "latency-status", "results-dir", "comment-url"} <= set(outputs)


def test_stage_actions_carry_the_setup_block_of_actions_setup() -> None:
    def uses_steps(action_dir: Path) -> list[tuple[str, str]]:
        return [(s.get("id", ""), s["uses"]) for s in _steps(action_dir) if "uses" in s]

    reference = uses_steps(REPO / "actions" / "setup")
    for action_dir in (REPO / "actions" / "validate", REPO):
        assert uses_steps(action_dir) == reference
        runs = [s["run"] for s in _steps(action_dir) if "run" in s]
        assert runs[0].endswith("setup.sh\" plan") and runs[1].endswith("setup.sh\" install")


def test_workflow_template_is_least_privilege_and_has_metadata() -> None:
    for template in WORKFLOW_TEMPLATES:
        workflow = yaml.safe_load(template.read_text(encoding="utf-8"))
        assert workflow["permissions"] == {}
        for job in workflow["jobs"].values():
            # read-only, plus writing the one report comment
            assert job["permissions"] in ({"contents": "read"},
                                          {"contents": "read", "pull-requests": "write"})
            for step in job["steps"]:
                uses = step.get("uses", "")
                if uses.startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False
                if uses:
                    assert _PINNED_USES.match(uses) or _OWN_ACTIONS.match(uses), uses
        metadata = json.loads(template.with_suffix(".properties.json").read_text(encoding="utf-8"))
        assert {"name", "description", "iconName", "categories", "filePatterns"} <= set(metadata)
        for pattern in metadata["filePatterns"]:
            re.compile(pattern)
        assert any(re.search(p, "shipml.yaml") for p in metadata["filePatterns"])


def test_jenkinsfile_runs_the_pipeline_and_publishes_junit_and_html() -> None:
    text = (REPO / "workflow-templates" / "Jenkinsfile.example").read_text(encoding="utf-8")
    assert "shipml run" in text
    assert "junit " in text and "validate.junit.xml" in text
    assert "publishHTML" in text and "report/report.html" in text and "validate.html" in text


# --- the setup script without pip ---------------------------------------------------------------


def _setup_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path)),
           "RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(tmp_path / "output")}
    env.update(extra)
    (tmp_path / "output").write_text("", encoding="utf-8")
    return env


def _plan(tmp_path: Path, **extra: str) -> tuple[dict[str, str], str]:
    env = _setup_env(tmp_path, **extra)
    completed = subprocess.run(["bash", str(SETUP_SCRIPT), "plan"], env=env, capture_output=True,
                               text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    raw = (tmp_path / "output").read_text(encoding="utf-8")
    return parse_output_file(raw), raw


def test_plan_names_the_venv_and_a_key_of_version_extras_python_and_os(tmp_path: Path) -> None:
    outputs, raw = _plan(tmp_path, SHIPML_SETUP_EXTRAS="validate,optimize", RUNNER_OS="Linux")
    version = ".".join(str(part) for part in sys.version_info[:3])
    assert outputs["venv"] == str(tmp_path / "shipml-venv-validate-optimize")
    assert outputs["ready"] == "false"
    assert re.fullmatch(rf"shipml-0\.1\.0-[0-9a-f]{{16}}-validate,optimize-py{version}-Linux-\w+",
                        outputs["key"]), outputs["key"]
    other, raw_again = _plan(tmp_path, SHIPML_SETUP_EXTRAS="validate", RUNNER_OS="Linux")
    assert other["key"] != outputs["key"]
    # Heredoc delimiters are random: the same outputs, written twice, never look the same.
    delimiters = re.findall(r"<<(\S+)", raw)
    assert len(set(delimiters)) == len(delimiters) == 3
    assert not set(delimiters) & set(re.findall(r"<<(\S+)", raw_again))


def test_setup_rejects_a_venv_path_with_a_newline(tmp_path: Path) -> None:
    run = run_action(REPO / "actions" / "setup", {"venv-path": f"{tmp_path}/v\n/usr/evil/bin"},
                     workspace=tmp_path / "ws", runner_temp=tmp_path / "temp")
    assert run.step("plan").returncode == 2
    assert "contains a newline" in run.step("plan").stderr
    assert run.github_path == []


def test_setup_never_empties_a_folder_that_is_not_a_venv(tmp_path: Path) -> None:
    precious = tmp_path / "home" / "notes.txt"
    precious.parent.mkdir()
    precious.write_text("keep me", encoding="utf-8")
    run = run_action(REPO / "actions" / "setup", {"venv-path": str(precious.parent)},
                     workspace=tmp_path / "ws", runner_temp=tmp_path / "temp")
    install = run.step("install")
    assert install.returncode == 2
    assert "exists and is not a virtual environment" in install.stderr
    assert precious.read_text(encoding="utf-8") == "keep me"


def test_plan_says_ready_only_when_the_stamp_holds_the_same_key(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "bin" / "shipml").write_text("#!/bin/sh\n", encoding="utf-8")
    (venv / "bin" / "shipml").chmod(0o755)
    outputs, _ = _plan(tmp_path, SHIPML_SETUP_VENV=str(venv))
    assert outputs["ready"] == "false"
    (venv / ".shipml-setup-key").write_text(outputs["key"] + "\n", encoding="utf-8")
    assert _plan(tmp_path, SHIPML_SETUP_VENV=str(venv))[0]["ready"] == "true"
    (venv / ".shipml-setup-key").write_text(outputs["key"].replace("py", "py9") + "\n", encoding="utf-8")
    assert _plan(tmp_path, SHIPML_SETUP_VENV=str(venv))[0]["ready"] == "false"


@pytest.mark.parametrize("extras", [
    "validate]; touch {marker} #", "$(touch {marker})", "validate\n::error::forged annotation",
])
def test_setup_rejects_hostile_extras_before_running_anything(tmp_path: Path, extras: str) -> None:
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    run = run_action(REPO / "actions" / "setup", {"extras": extras.format(marker=marker)},
                     workspace=tmp_path / "ws", runner_temp=tmp_path / "temp")
    plan = run.step("plan")
    assert plan.returncode == 2
    assert "is not a comma-separated list of extras" in plan.stderr
    assert not [line for line in (plan.stdout + plan.stderr).splitlines() if line.startswith("::")]
    assert [s.step_id for s in run.steps if s.ran] == ["plan"]
    assert not marker.exists()
    assert not (tmp_path / "temp" / "shipml-venv-validate").exists()


# --- the actions, run the way the runner runs them ----------------------------------------------


@pytest.fixture(scope="session")
def runner_temp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runner_temp")


@pytest.fixture(scope="session")
def first_setup(runner_temp: Path, tmp_path_factory: pytest.TempPathFactory) -> ActionRun:
    """The real install: actions/setup into a fresh venv, pip from PyPI (with pip's cache)."""
    run = run_action(REPO / "actions" / "setup", {"extras": "validate"},
                     workspace=tmp_path_factory.mktemp("workspace"), runner_temp=runner_temp)
    assert not run.failed, run.log
    return run


@pytest.fixture
def example_workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    shutil.copytree(EXAMPLE, workspace, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return workspace


@pytest.mark.slow
def test_setup_installs_shipml_from_this_checkout_into_a_fresh_venv(
    first_setup: ActionRun, runner_temp: Path
) -> None:
    install = first_setup.step("install")
    venv = runner_temp / "shipml-venv-validate"
    assert first_setup.step("plan").outputs["ready"] == "false"
    assert install.outputs["reused"] == "false"
    assert "installing shipml[validate]" in install.stdout
    assert first_setup.outputs["python"] == str(venv / "bin" / "python")
    assert first_setup.outputs["shipml"] == str(venv / "bin" / "shipml")
    assert first_setup.outputs["cache-hit"] == "false"
    probe = subprocess.run(
        [first_setup.outputs["python"], "-c",
         "import shipml, deepchecks; print(shipml.__file__); print(deepchecks.__version__)"],
        capture_output=True, text=True, check=True,
    )
    location, deepchecks_version = probe.stdout.split()
    assert Path(location).is_relative_to(venv), "shipml must be installed, not linked to the checkout"
    assert deepchecks_version == "0.19.1"
    version = subprocess.run([first_setup.outputs["shipml"], "--version"], capture_output=True,
                             text=True, check=True)
    assert version.stdout.strip() == "shipml 0.1.0"
    # add-to-path (default true) exposes the console script alone, not the venv's python.
    assert first_setup.github_path == [str(venv / "shipml-path")]
    assert sorted(p.name for p in (venv / "shipml-path").iterdir()) == ["shipml"]


@pytest.mark.slow
def test_second_setup_in_a_job_reuses_the_venv_without_pip(
    first_setup: ActionRun, runner_temp: Path, tmp_path: Path
) -> None:
    site_packages = next((runner_temp / "shipml-venv-validate" / "lib").glob("python*/site-packages"))
    before = {p.name: p.stat().st_mtime_ns for p in site_packages.iterdir()}
    run = run_action(REPO / "actions" / "setup", {"extras": "validate"},
                     workspace=tmp_path, runner_temp=runner_temp)
    assert not run.failed, run.log
    assert run.step("plan").outputs["ready"] == "true"
    install = run.step("install")
    assert "reusing the cached venv" in install.stdout and "pip not run" in install.stdout
    assert install.outputs["reused"] == "true"
    assert run.outputs["cache-hit"] == "true"
    assert run.outputs["shipml"] == first_setup.outputs["shipml"]
    assert {p.name: p.stat().st_mtime_ns for p in site_packages.iterdir()} == before


@pytest.mark.slow
def test_validate_action_passes_on_the_bundled_example(
    first_setup: ActionRun, runner_temp: Path, example_workspace: Path
) -> None:
    run = run_action(REPO / "actions" / "validate", {}, workspace=example_workspace,
                     runner_temp=runner_temp)
    assert not run.failed, run.log
    assert run.step("install").outputs["reused"] == "true"
    assert set(run.step("validate").outputs) == {"status", "result", "report", "junit"}
    assert run.outputs["status"] == "pass"
    result_path = example_workspace / run.outputs["result"]
    assert result_path == example_workspace / ".shipml" / "results" / "validate.json"
    result = json.loads(result_path.read_text(encoding="utf-8"))
    assert (result["stage"], result["status"]) == ("validate", "pass")
    assert (example_workspace / run.outputs["junit"]).is_file()
    assert (example_workspace / run.outputs["report"]).is_file()


@pytest.mark.slow
def test_validate_action_does_not_execute_hostile_inputs(
    first_setup: ActionRun, runner_temp: Path, example_workspace: Path, tmp_path: Path
) -> None:
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    hostile_label = f'benign"; touch {marker} #\nstatus<<EOF\npass\nEOF'
    run = run_action(REPO / "actions" / "validate",
                     {"label": hostile_label, "pytest": f"$(touch {marker})"},
                     workspace=example_workspace, runner_temp=runner_temp)
    validate = run.step("validate")
    assert validate.returncode == 2, run.log
    assert "label column" in validate.stderr and "is not in the data" in validate.stderr
    assert not marker.exists()
    assert validate.outputs == {}
    assert run.outputs["status"] == ""


@pytest.mark.slow
def test_top_level_action_cannot_have_its_outputs_forged(
    first_setup: ActionRun, runner_temp: Path, example_workspace: Path
) -> None:
    # A value that reaches $GITHUB_OUTPUT and carries a fake delimiter and fake outputs.
    hostile_dir = "out\nstatus<<EOF\nfail\nEOF\nforged=1"
    run = run_action(REPO, {"output-dir": hostile_dir, "suites": "data_integrity",
                            "stages": "validate"},
                     workspace=example_workspace, runner_temp=runner_temp)
    assert not run.failed, run.log
    shipml = run.step("shipml")
    assert "status<<EOF" in shipml.output_file_text  # the hostile text did reach the file
    assert set(shipml.outputs) == {"status", "result", "report", "junit", "results-dir",
                                   "validate-status"}
    assert run.outputs["status"] == "pass"
    assert run.outputs["validate-status"] == "pass"
    assert run.outputs["optimize-status"] == ""
    assert run.outputs["results-dir"] == f"{hostile_dir}/results"
    result = json.loads((example_workspace / hostile_dir / "results" / "validate.json")
                        .read_text(encoding="utf-8"))
    assert result["status"] == "pass"
