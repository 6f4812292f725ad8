"""The GitHub Actions layer: zizmor, GitHub's own schemas, the structural rules of style.md, the one
setup step that every action carries, the templates and the Jenkinsfile, and setup.sh's planning and
refusals called directly. The actions themselves run the way the runner runs them, hostile inputs
included, through real act in test_act.py and test_act_templates.py.
"""

from __future__ import annotations

import importlib
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

from tests.actions._act import copy_action_source

REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO / "actions" / "setup" / "setup.sh"
ACTION_DIRS = sorted([REPO, *(path.parent for path in (REPO / "actions").glob("*/action.yml"))])
WORKFLOW_TEMPLATES = sorted((REPO / "workflow-templates").glob("*.yml"))

_PINNED_USES = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
_VERSION_COMMENT = re.compile(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
_KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_INPUT_REFERENCE = re.compile(r"\binputs\.([\w-]+)")
#: the only owner whose actions the templates may reference by tag (see shipml-pr.yml)
_OWN_ACTIONS = re.compile(r"^OWNER/shipml(/[\w./-]+)?@v\d+$")


def load_action(action_dir: Path) -> dict[str, Any]:
    """Return the parsed ``action.yml`` of ``action_dir``."""
    document = yaml.safe_load((action_dir / "action.yml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def parse_output_file(text: str) -> dict[str, str]:
    """Parse a ``GITHUB_OUTPUT`` file the way the runner does; raise ValueError where it would fail."""
    outputs: dict[str, str] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        heredoc = line.find("<<")
        equals = line.find("=")
        if heredoc > 0 and (equals < 0 or heredoc < equals):
            name, delimiter = line[:heredoc], line[heredoc + 2:]
            value_lines: list[str] = []
            while True:
                if index >= len(lines):
                    raise ValueError(f"output {name!r}: delimiter {delimiter!r} never closes")
                if lines[index] == delimiter:
                    index += 1
                    break
                value_lines.append(lines[index])
                index += 1
            outputs[name] = "\n".join(value_lines)
        elif equals > 0:
            outputs[line[:equals]] = line[equals + 1:]
        else:
            raise ValueError(f"invalid output line {line!r}")
    return outputs


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
        # act (and GitHub's runner) fetch every `uses:` of a composite action before evaluating
        # `if:`: one third-party step would break every offline act run, skipped or not.
        assert "uses" not in step, f"step {number}: a `uses:` step ({step['uses']})"
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
                        assert re.fullmatch(r"\$\{\{ inputs\.[\w-]+( \|\| inputs\.[\w-]+)* \}\}",
                                            str(env_value)), (
                            f"step {number}: {env_name} must be one input (and its old names)")
            else:
                assert key == "working-directory", f"step {number}: inputs used in {key}:"
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


#: inputs of every action that set no configuration key, and the variable each reaches
_COMMON = {"config": "SHIPML_CONFIG", "output-dir": "SHIPML_OUTPUT_DIR",
           "working-directory": None, "python-version": None}
#: the inputs of an action that are no option of its command, and their variables
_NOT_OPTIONS: dict[str, dict[str, str | None]] = {
    ".": {"stages": "SHIPML_STAGES", "event": "SHIPML_EVENT", "rollout": "SHIPML_ROLLOUT",
          "registry-username": "SHIPML_REGISTRY_USERNAME",
          "registry-password": "SHIPML_REGISTRY_PASSWORD", "github-token": "SHIPML_GITHUB_TOKEN"},
    "actions/build": {"registry-username": "SHIPML_REGISTRY_USERNAME",
                      "registry-password": "SHIPML_REGISTRY_PASSWORD"},
    "actions/canary": {"action": "SHIPML_CANARY_ACTION"},
    "actions/monitor": {"github-token": "SHIPML_GITHUB_TOKEN"},
    "actions/report": {"github-token": "SHIPML_GITHUB_TOKEN"},
}
_COMMAND_ACTIONS = [d for d in ACTION_DIRS if d.name != "setup"]


def _options_of(action_dir: Path) -> dict[str, tuple[str, str]]:
    """The rule of shipml.generate.actions, said again independently: each option of the stage's
    command is an input named after its flag (or its declared name), old names kept; at the
    root, each option of a pipeline stage with a pipeline_input name. Input → (variable, old
    name or "")."""
    from shipml import stages
    from shipml._stage import Option

    def options(name: str) -> tuple[Option, ...]:
        stage = stages.get(name)
        assert stage is not None, f"{action_dir}: no stage {name}"
        return tuple(importlib.import_module(stage.module).OPTIONS)

    found: dict[str, tuple[str, str]] = {}
    if action_dir == REPO:
        for name in stages.pipeline():
            for option in options(name):
                if option.pipeline_input:
                    found[option.pipeline_input] = (option.env, "")
        return found
    for option in options(action_dir.name):
        name = option.input or option.flag.removeprefix("--")
        found[name] = (option.env, "")
        for old in option.old_inputs:
            found[old] = (option.env, name)
    return found


@pytest.mark.parametrize("action_dir", _COMMAND_ACTIONS, ids=_ids(_COMMAND_ACTIONS))
def test_the_inputs_of_every_action_are_exactly_what_the_rule_gives(action_dir: Path) -> None:
    name = str(action_dir.relative_to(REPO)) or "."
    action = load_action(action_dir)
    options = _options_of(action_dir)
    others = {**_COMMON, **_NOT_OPTIONS.get(name, {})}
    assert not set(options) & set(others), "an option input has the name of another input"
    assert set(action["inputs"]) == set(options) | set(others)
    (step,) = [s for s in _steps(action_dir) if s.get("id") == ("shipml" if name == "." else
                                                                 action_dir.name)]
    variables = {variable: str(value) for variable, value in step["env"].items()
                 if variable != "SHIPML_EXECUTABLE"}
    expected: dict[str, str] = {}
    for input_name, variable in others.items():
        if variable is not None:
            expected[variable] = f"${{{{ inputs.{input_name} }}}}"
    for input_name, (variable, renamed_to) in options.items():
        spec = action["inputs"][input_name]
        assert spec.get("required") is False and spec.get("default") == "", input_name
        if renamed_to:
            assert renamed_to in spec["deprecationMessage"], input_name
            continue
        olds = [old for old, (_, new) in options.items() if new == input_name]
        expected[variable] = "${{ " + " || ".join(f"inputs.{n}" for n in [input_name, *olds]) + " }}"
    assert variables == expected


def test_every_stage_but_serve_has_an_action() -> None:
    from shipml import stages

    assert {d.name for d in _COMMAND_ACTIONS if d != REPO} == set(stages.names()) - {"serve"}


def test_validate_and_the_all_in_one_action_keep_their_outputs() -> None:
    outputs = load_action(REPO / "actions" / "validate")["outputs"]
    assert {"status", "result", "report", "junit"} <= set(outputs)
    stage = next(s for s in _steps(REPO) if s.get("id") == "shipml")
    assert stage["run"] == 'exec "$SHIPML_EXECUTABLE" run'
    outputs = load_action(REPO)["outputs"]
    assert {"status", "validate-status", "latency-status", "results-dir", "comment-url"} <= set(outputs)


_SETUP_BLOCK = re.compile(r"^    # --- shipml setup ---\n(.*?)^    # --- end shipml setup ---\n",
                          re.MULTILINE | re.DOTALL)
#: the extras each action installs (validate's deepchecks stack only where validate runs)
_EXTRAS = {".": "validate,build,sign,canary", "actions/validate": "validate", "actions/optimize": '""',
           "actions/latency": '""', "actions/report": '""', "actions/build": "build",
           "actions/sign": "sign", "actions/canary": "canary", "actions/monitor": "validate"}


def _setup_block(action_dir: Path) -> str:
    blocks = _SETUP_BLOCK.findall((action_dir / "action.yml").read_text(encoding="utf-8"))
    assert len(blocks) == 1, f"{action_dir}: expected one `# --- shipml setup ---` block"
    return str(blocks[0])


@pytest.mark.parametrize("action_dir", [d for d in ACTION_DIRS if d.name != "setup"],
                         ids=_ids([d for d in ACTION_DIRS if d.name != "setup"]))
def test_setup_block_is_the_one_of_actions_setup(action_dir: Path) -> None:
    # The block is copied because a composite action cannot `uses:` its sibling portably; the
    # copies may differ only in the script's path and in what actions/setup takes as inputs.
    name = str(action_dir.relative_to(REPO)) or "."
    assert name in _EXTRAS, f"{name}: add the extras this action installs to _EXTRAS"
    expected = (_setup_block(REPO / "actions" / "setup")
                .replace("${{ inputs.extras }}", _EXTRAS[name])
                .replace("${{ inputs.venv-path }}", '""')
                .replace("${{ inputs.add-to-path }}", '"false"'))
    if action_dir == REPO:
        expected = expected.replace('"$GITHUB_ACTION_PATH/../setup/setup.sh"',
                                    '"$GITHUB_ACTION_PATH/actions/setup/setup.sh"')
    assert _setup_block(action_dir) == expected
    stage = _steps(action_dir)[-1]
    assert stage["env"]["SHIPML_EXECUTABLE"] == "${{ steps.install.outputs.shipml }}"
    assert stage["run"].startswith('exec "$SHIPML_EXECUTABLE" ')


def test_every_action_is_set_up_by_the_block_alone() -> None:
    for action_dir in ACTION_DIRS:
        first = _steps(action_dir)[0]
        assert first["id"] == "install" and first["run"].endswith('setup.sh" install')


#: each template's jobs and the only permissions each may hold
_TEMPLATE_PERMISSIONS = {
    "shipml-pr.yml": {"pipeline": {"contents": "read", "pull-requests": "write"}},
    "shipml-release.yml": {"release": {"contents": "read", "packages": "write"},
                           "rollout": {"contents": "read", "packages": "read"}},
    "shipml-monitor.yml": {"monitor": {"contents": "read", "issues": "write"}},
}


def test_every_template_is_known() -> None:
    assert sorted(p.name for p in WORKFLOW_TEMPLATES) == sorted(_TEMPLATE_PERMISSIONS)


@pytest.mark.parametrize("template", WORKFLOW_TEMPLATES, ids=[p.name for p in WORKFLOW_TEMPLATES])
def test_workflow_template_is_least_privilege_and_has_metadata(template: Path) -> None:
    workflow = yaml.safe_load(template.read_text(encoding="utf-8"))
    assert workflow["permissions"] == {}
    assert {name: job["permissions"] for name, job in workflow["jobs"].items()} == \
        _TEMPLATE_PERMISSIONS[template.name]
    for job in workflow["jobs"].values():
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


def test_pull_request_template_fires_on_every_pull_request() -> None:
    template = REPO / "workflow-templates" / "shipml-pr.yml"
    workflow = yaml.safe_load(template.read_text(encoding="utf-8"))
    # Copied by hand, a `branches: [$default-branch]` filter stays literal and never fires.
    assert workflow[True] == {"pull_request": None}  # YAML 1.1 reads the key `on` as true
    assert "$default-branch" not in template.read_text(encoding="utf-8")


def test_release_template_releases_pushes_to_the_default_branch_and_tags_one_rollout_at_a_time() -> None:
    text = (REPO / "workflow-templates" / "shipml-release.yml").read_text(encoding="utf-8")
    workflow = yaml.safe_load(text)
    assert workflow[True] == {"push": {"branches": ["$default-branch"], "tags": ["v*"]}}
    assert "replace $default-branch" in text  # said for a copy made by hand
    release, rollout = workflow["jobs"]["release"], workflow["jobs"]["rollout"]
    # id-token only for keyless signing: present as a comment, never granted by default
    assert "# id-token: write" in text and "id-token" not in json.dumps(workflow)
    (shipml,) = [step for step in release["steps"] if step.get("id") == "shipml"]
    assert shipml["with"]["event"] == "push" and shipml["with"]["rollout"] == "false"
    assert shipml["with"]["sign-key"] == "env://COSIGN_PRIVATE_KEY"
    assert set(release["outputs"]) == {"image", "digest", "rollout"}
    assert rollout["needs"] == "release"
    assert rollout["if"] == "needs.release.outputs.rollout == 'deferred'"
    assert rollout["environment"] == "production"
    assert rollout["concurrency"] == {"group": "shipml-rollout-${{ github.repository }}",
                                      "cancel-in-progress": False}
    summary = rollout["steps"][-1]
    assert summary["if"] == "always()" and "GITHUB_STEP_SUMMARY" in summary["run"]
    assert {"SHIPML_OUTCOME", "SHIPML_FINAL_WEIGHT", "SHIPML_ANALYSIS", "SHIPML_STATUS"} \
        <= set(summary["env"])


# --- GitHub's own schemas (check-jsonschema's vendored copies, offline) -------------------------


def _check_jsonschema() -> str:
    found = shutil.which("check-jsonschema") or str(Path(sys.executable).with_name("check-jsonschema"))
    assert Path(found).exists(), "check-jsonschema is a dev dependency: pip install -e '.[dev]'"
    return found


@pytest.mark.parametrize(("schema", "files"), [
    ("vendor.github-actions", [d / "action.yml" for d in ACTION_DIRS]),
    ("vendor.github-workflows", WORKFLOW_TEMPLATES),
], ids=["actions", "workflows"])
def test_actions_and_templates_validate_against_githubs_schemas(schema: str, files: list[Path]) -> None:
    completed = subprocess.run(
        [_check_jsonschema(), "--builtin-schema", schema, *map(str, files)],
        capture_output=True, text=True, check=False, cwd=REPO)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "ok -- validation done" in completed.stdout


def test_a_broken_action_fails_githubs_schema(tmp_path: Path) -> None:
    broken = tmp_path / "action.yml"
    broken.write_text("name: x\ndescription: y\nruns:\n  using: composite\n  steps:\n"
                      "    - run: echo hi\n", encoding="utf-8")  # a composite run step needs shell
    completed = subprocess.run([_check_jsonschema(), "--builtin-schema", "vendor.github-actions",
                                str(broken)], capture_output=True, text=True, check=False)
    assert completed.returncode == 1, completed.stdout


def test_jenkinsfile_runs_the_pipeline_and_publishes_junit_and_html() -> None:
    text = (REPO / "workflow-templates" / "Jenkinsfile.example").read_text(encoding="utf-8")
    assert "shipml run" in text
    assert "junit " in text and "validate.junit.xml" in text
    assert "publishHTML" in text and "report/report.html" in text and "validate.html" in text
    # a stock Jenkins has no `linux` label: such an agent would stay queued
    assert "agent any" in text and "label 'linux'" not in text
    # the git-ref baseline needs the target branch, which a PR checkout may lack
    assert 'refs/remotes/origin/${CHANGE_TARGET}' in text and "git fetch" in text
    # Jenkins' default CSP blanks deepchecks' page: the file says how to view it
    assert "hudson.model.DirectoryBrowserSupport.CSP" in text


def _jenkins_stage(text: str, name: str) -> str:
    start = text.index(f"stage('{name}')")
    following = text.find("        stage('", start + 1)
    return text[start:following if following != -1 else len(text)]


def test_jenkinsfile_releases_main_and_tags_and_rolls_out_after_an_approval_one_at_a_time() -> None:
    text = (REPO / "workflow-templates" / "Jenkinsfile.example").read_text(encoding="utf-8")
    releases = "anyOf { buildingTag(); branch 'main' }"
    pull = _jenkins_stage(text, "Validate, optimize, latency, report")
    assert "not { anyOf { triggeredBy 'TimerTrigger'; buildingTag(); branch 'main' } }" in pull
    release = _jenkins_stage(text, "Release: gates, build, push, sign, report")
    assert releases in release and ".shipml-venv/bin/shipml run" in release
    assert "SHIPML_ROLLOUT = 'false'" in release
    assert "SHIPML_RELEASE_REQUIREMENT = 'shipml[validate,build,sign,canary]'" in release
    # secrets only through withCredentials, which masks them; the key is a file, never inline
    assert "file(credentialsId: 'shipml-cosign-key', variable: 'SHIPML_SIGN_KEY')" in release
    assert "--password-stdin" in release
    rollout = _jenkins_stage(text, "Roll out (canary)")
    assert releases in rollout and 'grep -q "^canary:"' in rollout
    assert rollout.index("input message:") < rollout.index("lock(resource:") \
        < rollout.index(".shipml-venv/bin/shipml canary")
    assert "stage('Monitor production')" in text  # the monitor stage stays


def test_install_commands_name_the_pypi_release_and_keep_the_git_form() -> None:
    from shipml.validate._pytest import PYTEST_MISSING

    jenkinsfile = (REPO / "workflow-templates" / "Jenkinsfile.example").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "SHIPML_REQUIREMENT = 'shipml[validate]'" in jenkinsfile
    assert "'shipml[validate] @ git+https://github.com/OWNER/shipml@<commit>'" in jenkinsfile
    assert 'pip install "shipml[validate]"' in PYTEST_MISSING
    # the README installs the release from PyPI (release.yml publishes every v* tag) and keeps the
    # git form for a commit not released yet
    assert re.search(r'^pip install "shipml\[validate\]"\s', readme, re.MULTILINE)
    assert 'pip install "shipml[validate] @ git+https://github.com/OWNER/shipml@<commit>"' in readme


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
    # the label is the release tag when this checkout's HEAD is one, else dev
    assert re.fullmatch(rf"shipml-(dev|v[0-9.]+)-[0-9a-f]{{16}}-validate,optimize-py{version}-Linux-\w+",
                        outputs["key"]), outputs["key"]
    other, raw_again = _plan(tmp_path, SHIPML_SETUP_EXTRAS="validate", RUNNER_OS="Linux")
    assert other["key"] != outputs["key"]
    # Heredoc delimiters are random: the same outputs, written twice, never look the same.
    delimiters = re.findall(r"<<(\S+)", raw)
    assert len(set(delimiters)) == len(delimiters) == 3
    assert not set(delimiters) & set(re.findall(r"<<(\S+)", raw_again))


@pytest.mark.parametrize("venv_path", [
    "$(touch {marker})", "{tmp}/`touch {marker}`", "{tmp}/a b", "{tmp}/x';touch {marker};'",
    '{tmp}/x";touch {marker};"', "{tmp}/$HOME", "{tmp}/v\\", "{tmp}/caf\u00e9",
])
def test_setup_refuses_a_venv_path_outside_the_allowed_characters(tmp_path: Path, venv_path: str) -> None:
    # pip writes a /bin/sh launcher for such paths, and setup.sh used to run it: `$(...)` ran.
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    value = venv_path.format(marker=marker, tmp=tmp_path)
    env = _setup_env(tmp_path, SHIPML_SETUP_VENV=value, SHIPML_SETUP_ADD_TO_PATH="true",
                     GITHUB_PATH=str(tmp_path / "path"))
    (tmp_path / "path").write_text("", encoding="utf-8")
    completed = subprocess.run(["bash", str(SETUP_SCRIPT), "install"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, check=False)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert "holds a character outside letters, digits and . _ + - /" in completed.stderr
    assert not marker.exists()
    assert (tmp_path / "output").read_text(encoding="utf-8") == ""
    assert (tmp_path / "path").read_text(encoding="utf-8") == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output", "path"]


def test_setup_refuses_a_runner_temp_with_odd_characters(tmp_path: Path) -> None:
    odd = tmp_path / "run $(id)"
    odd.mkdir()
    completed = subprocess.run(["bash", str(SETUP_SCRIPT), "plan"],
                               env=_setup_env(tmp_path, RUNNER_TEMP=str(odd)),
                               capture_output=True, text=True, check=False)
    assert completed.returncode == 2
    assert "the default venv path (from RUNNER_TEMP)" in completed.stderr


def test_under_act_the_venv_lives_in_the_cache_and_is_reused_across_runs(tmp_path: Path) -> None:
    outputs, _ = _plan(tmp_path, ACT="true", XDG_CACHE_HOME=str(tmp_path / "cache"),
                       SHIPML_SETUP_EXTRAS="validate")
    label, source_hash = outputs["key"].split("-")[1:3]
    assert outputs["venv"] == str(tmp_path / "cache" / "shipml"
                                  / f"act-venv-{label}-validate-{source_hash[:8]}")
    # an explicit venv-path still wins under act
    explicit, _ = _plan(tmp_path, ACT="true", SHIPML_SETUP_VENV=str(tmp_path / "v"))
    assert explicit["venv"] == str(tmp_path / "v")


def test_under_act_two_sources_never_share_a_venv(tmp_path: Path) -> None:
    # Two clones run at once (a second checkout beside this one) must not reinstall the venv the
    # other runs from: a venv shared by version and extras alone lost onnxruntime mid-run.
    other = tmp_path / "other"
    shutil.copytree(REPO / "actions", other / "actions")
    shutil.copytree(REPO / "scripts" / "shipml", other / "scripts" / "shipml",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, other / name)
    (other / "scripts" / "shipml" / "changed.py").write_text("# another source\n", encoding="utf-8")
    env = {"ACT": "true", "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "SHIPML_SETUP_EXTRAS": "validate"}
    here, _ = _plan(tmp_path, **env)
    completed = subprocess.run(["bash", str(other / "actions" / "setup" / "setup.sh"), "plan"],
                               env=_setup_env(tmp_path, **env), capture_output=True, text=True,
                               check=False)
    assert completed.returncode == 0, completed.stderr
    there = parse_output_file((tmp_path / "output").read_text(encoding="utf-8"))
    assert here["venv"] != there["venv"]
    assert Path(here["venv"]).parent == Path(there["venv"]).parent


def test_python_version_comes_from_the_tool_cache(tmp_path: Path) -> None:
    version = ".".join(str(part) for part in sys.version_info[:3])
    minor = ".".join(version.split(".")[:2])
    tool = tmp_path / "toolcache" / "Python" / version / "x64" / "bin"
    tool.mkdir(parents=True)
    used = tmp_path / "used"
    launcher = tool / "python3"
    launcher.write_text(f'#!/bin/sh\ntouch "{used}"\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    launcher.chmod(0o755)
    outputs, _ = _plan(tmp_path, SHIPML_SETUP_PYTHON_VERSION=minor,
                       RUNNER_TOOL_CACHE=str(tmp_path / "toolcache"))
    assert used.exists()
    assert f"-py{version}-" in outputs["key"]


@pytest.mark.parametrize(("environ", "code", "message"), [
    ({"SHIPML_SETUP_PYTHON_VERSION": "3.11; touch x"}, 2, "is not a Python version such as 3.11"),
    ({"SHIPML_SETUP_PYTHON_VERSION": "3.99"}, 2, "uses: actions/setup-python@<full sha>"),
    ({"SHIPML_SETUP_PYTHON_VERSION": "3.99", "ACT": "true"}, 0, "under act python3 on PATH is used"),
])
def test_python_version_that_is_not_there(tmp_path: Path, environ: dict[str, str], code: int,
                                          message: str) -> None:
    env = _setup_env(tmp_path, RUNNER_TOOL_CACHE=str(tmp_path / "none"),
                     XDG_CACHE_HOME=str(tmp_path / "cache"), **environ)
    completed = subprocess.run(["bash", str(SETUP_SCRIPT), "plan"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, check=False)
    assert completed.returncode == code, completed.stderr
    assert message in completed.stdout + completed.stderr
    assert not (tmp_path / "x").exists()


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


def _released_source(tmp_path: Path, tag: str) -> Path:
    """A copy of the action as GitHub's tarball of ``tag`` holds it: no .git, and a
    .git_archival.txt that git archive filled in (export-subst)."""
    source = copy_action_source(tmp_path / "action")
    (source / ".git_archival.txt").write_text(
        f"node: {'a' * 40}\nnode-date: 2026-12-01T00:00:00+00:00\ndescribe-name: {tag}\n",
        encoding="utf-8")
    return source


def _install(source: Path, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = _setup_env(tmp_path, SHIPML_SETUP_EXTRAS="", **extra)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_", "SHIPML_"))},
           **env}
    return subprocess.run(["bash", str(source / "actions" / "setup" / "setup.sh"), "install"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_setup_installs_a_release_with_uv_under_its_tag_version(tmp_path: Path) -> None:
    source = _released_source(tmp_path, "v1.2.3")
    completed = _install(source, tmp_path, SHIPML_SETUP_VENV=str(tmp_path / "venv"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert re.search(r"^shipml setup: installing with uv \d+\.\d+\.\d+", completed.stdout, re.M), \
        completed.stdout
    assert "installing with pip" not in completed.stdout
    outputs = parse_output_file((tmp_path / "output").read_text(encoding="utf-8"))
    assert outputs["key"].startswith("shipml-v1.2.3-")
    version = subprocess.run([outputs["shipml"], "--version"], capture_output=True, text=True,
                             check=True)
    assert version.stdout == "shipml 1.2.3\n"
    # uv was installed beside the build copy, not into the venv the user's steps run
    assert not list((tmp_path / "venv").glob("lib/python*/site-packages/uv"))


@pytest.mark.slow
def test_setup_falls_back_to_pip_when_uv_fails_and_says_so(tmp_path: Path) -> None:
    # uv for real, unable to install: offline, with an empty cache; pip (online) then installs
    source = _released_source(tmp_path, "v1.2.4")
    completed = _install(source, tmp_path, SHIPML_SETUP_VENV=str(tmp_path / "venv"), UV_OFFLINE="1",
                         UV_CACHE_DIR=str(tmp_path / "empty-uv-cache"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert ("shipml setup: uv could not install shipml[] (see above); installing with pip instead\n"
            "shipml setup: installing with pip ") in completed.stdout, completed.stdout
    assert f"(cache {tmp_path / 'empty-uv-cache'})" in completed.stdout
    version = subprocess.run([str(tmp_path / "venv" / "bin" / "shipml"), "--version"],
                             capture_output=True, text=True, check=True)
    assert version.stdout == "shipml 1.2.4\n"


@pytest.mark.parametrize("installer", ["conda", "uv;id", ""])
def test_setup_refuses_an_installer_it_does_not_know(tmp_path: Path, installer: str) -> None:
    env = _setup_env(tmp_path, SHIPML_SETUP_INSTALLER=installer)
    completed = subprocess.run(["bash", str(SETUP_SCRIPT), "plan"], env=env, capture_output=True,
                               text=True, check=False)
    if installer == "":  # unset and empty are the default, auto
        assert completed.returncode == 0, completed.stderr
        return
    assert completed.returncode == 2
    assert "must be auto, uv or pip" in completed.stderr
