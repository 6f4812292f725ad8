"""The README's act command as a new user runs it: copied from the quick start, verbatim, at the
root of a repository that holds the pull-request template, with a clone of shipml in
``$HOME/src/shipml``, offline. It runs, and the reports are in the repository after act deleted
its workspace. ``act -b`` (host mode binds nothing) says so instead of 'shipml.yaml not found'.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shipml.config import ACT_EMPTY_WORKSPACE, find_config
from shipml.errors import ConfigError
from tests.actions._act import REPO, act_binary, copy_action_source, prepare_workspace
from tests.actions.test_act_templates import PR_CONFIG

README = REPO / "README.md"
EVENT = {"pull_request": {"number": 7, "base": {"ref": "main"}}}


def _readme_command(verb: str) -> str:
    """Return the README's ``act VERB`` command with its continuation lines, as written."""
    block = README.read_text(encoding="utf-8").split("### act: ", 1)[1].split("```bash\n", 1)[1]
    block = block.split("```", 1)[0]
    match = re.search(rf"^act {verb} .*?[^\\]\n", block, flags=re.M | re.S)
    assert match, f"README.md's act block has no `act {verb}` command"
    return match.group(0)


def _user_repository(tmp_path: Path) -> tuple[Path, Path]:
    """Return a user's repository with the pull-request template and EVENT.json, and a HOME
    that holds a clone of shipml in src/shipml."""
    repository = prepare_workspace(tmp_path / "repo", PR_CONFIG)
    workflows = repository / ".github" / "workflows"
    workflows.mkdir(parents=True)
    shutil.copy2(REPO / "workflow-templates" / "shipml-pr.yml", workflows / "shipml-pr.yml")
    (repository / "EVENT.json").write_text(json.dumps(EVENT), encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repository, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repository, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "base"], cwd=repository, check=True)
    subprocess.run(["git", "update-ref", "refs/remotes/origin/main", "HEAD"], cwd=repository,
                   check=True)
    home = tmp_path / "home"
    clone = copy_action_source(home / "src" / "shipml")
    shutil.copytree(REPO / "workflow-templates", clone / "workflow-templates")
    return repository, home


def _run(command: str, repository: Path, home: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items()
           if name in ("LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
           or name.startswith("PIP_")}
    env.update({"HOME": str(home), "XDG_CACHE_HOME": str(cache), "PWD": str(repository),
                "PATH": f"{Path(act_binary()).parent}{os.pathsep}{os.environ['PATH']}"})
    # one act run at a time per cache, as tests/actions/_act.py does
    with open(cache / ".act-run.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return subprocess.run(["bash", "-c", command], cwd=repository, env=env,
                              capture_output=True, text=True, timeout=1800, check=False)


@pytest.mark.act
@pytest.mark.slow
def test_the_quick_start_act_command_runs_offline_as_written_and_keeps_the_reports(
        act_home: Path, tmp_path: Path) -> None:
    repository, home = _user_repository(tmp_path)
    command = _readme_command("pull_request")
    run = _run(command, repository, home, act_home)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    assert "failed to fetch" not in log
    assert "would post to" in log
    # act deleted its workspace; the reports are in the user's repository
    kept = repository / ".shipml"
    assert (kept / "report" / "report.html").is_file(), sorted(map(str, kept.rglob("*")))[:40]
    assert (kept / "report" / "report.md").is_file()
    for stage in ("validate", "latency"):
        result = json.loads((kept / "results" / f"{stage}.json").read_text(encoding="utf-8"))
        assert result["status"] == "pass", stage
    # the upload step was skipped under act: its stand-in only let act set the job up offline
    assert "stand-in for actions/upload-artifact uploads nothing" not in log


@pytest.mark.act
@pytest.mark.slow
def test_act_with_b_in_host_mode_says_the_workspace_is_empty_and_what_to_run(
        act_home: Path, tmp_path: Path) -> None:
    repository, home = _user_repository(tmp_path)
    command = _readme_command("pull_request").replace("act pull_request ", "act pull_request -b ")
    run = _run(command, repository, home, act_home)
    log = run.stdout + run.stderr
    assert run.returncode != 0
    head = ACT_EMPTY_WORKSPACE.split("{workspace}")[0].format(
        source="environment SHIPML_CONFIG", chosen="shipml.yaml")
    assert head in log, log[-6000:]
    assert "run act without -b" in log


def test_under_act_an_empty_workspace_is_named_instead_of_a_missing_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "hostexecutor"
    empty.mkdir()
    act = {"ACT": "true", "GITHUB_WORKSPACE": str(empty), "SHIPML_CONFIG": "shipml.yaml"}
    with pytest.raises(ConfigError) as raised:
        find_config(None, act)
    assert raised.value.message == ACT_EMPTY_WORKSPACE.format(
        source="environment SHIPML_CONFIG", chosen="shipml.yaml", workspace=empty)
    with pytest.raises(ConfigError, match="run act without -b"):
        find_config(None, {**act, "SHIPML_CONFIG": ""})
    # a workspace with files, or not under act: the file is simply missing
    (empty / "README.md").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        find_config(None, act)
    assert raised.value.message == "environment SHIPML_CONFIG: config file shipml.yaml not found"
    assert find_config(None, {"GITHUB_WORKSPACE": str(tmp_path / "none")}) is None

