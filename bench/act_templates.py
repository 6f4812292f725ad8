"""Wall time of both workflow templates on the bundled example through real act (offline, host
mode), from a warm cache: the act venvs installed, act's action cache filled, the serving image's
dependency layer in the engine's build cache.

One warm-up run of each template fills the cache (and is not counted); then each template runs
``--runs`` times and the median of every part is printed: act's whole run, the setup step (setup.sh
reusing the venv), every stage (shipml's own ``duration_s``, as the report prints it) and the rest
(act's job set-up, the checkout copy, Python start-ups, the summary step). The release template
runs against the local Docker Engine and the loopback registry that ``bash .ci/services`` starts,
with a key from ``shipml keygen``; its rollout job is reported apart.

    python bench/act_templates.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.actions._act import (  # noqa: E402
    act_cache_home,
    copy_action_source,
    prepare_workspace,
    run_template,
)
from tests.actions.conftest import KEY_PASSWORD, _remove, release_config  # noqa: E402

_STEP = re.compile(r"^\[(?P<job>[^\]]+?)\s*\]\s+✅  Success - Main (?P<step>.+?) \[(?P<time>[\dhms.µ]+)\]$")
#: a row of the report's stage table, as act prints the comment it would post
_STAGE = re.compile(r"\| (?P<stage>[a-z]+) \| \S+ [a-z]+ \| .* \| (?P<seconds>[\d.]+) s \|\s*$")
PR_CONFIG = {"model": {"path": "model.onnx", "label": "benign", "train": "train.csv",
                       "test": "test.csv"},
             "validate": {"suites": ["data_integrity"], "warn_only": ["FeatureFeatureCorrelation"]},
             "optimize": {"candidates": ["graph", "dynamic_int8"], "pick": "fastest"},
             "latency": {"batch_sizes": [1], "max_time_s": 2, "min_runs": 50,
                         "process_time_s": 0.2, "min_processes": 2}}


def seconds(text: str) -> float:
    """Return act's Go duration (``1m41.17s``, ``16.4ms``, ``3µs``) in seconds."""
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(h|ms|µs|m|s)", text):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "µs": 1e-6}[unit]
    return total


def parts(log: str) -> dict[str, float]:
    """Return the seconds of each part of one act run, from its log."""
    found: dict[str, float] = {}
    for line in log.splitlines():
        step = _STEP.match(line.strip())
        if step and "setup.sh" in step["step"] and "install" in step["step"]:
            key = f"{step['job'].split('/')[-1]}: setup"
            found[key] = found.get(key, 0.0) + seconds(step["time"])
        elif step and step["step"].startswith("OWNER/shipml"):
            key = f"{step['job'].split('/')[-1]}: action step"
            found[key] = found.get(key, 0.0) + seconds(step["time"])
        stage = _STAGE.search(line)
        if stage:
            found[f"stage {stage['stage']}"] = float(stage["seconds"])
    # `shipml run` is one step: what its stages do not account for is the report (rendering,
    # the printed comment) and the Python start-up of each stage
    # (the action step is the composite as a whole: its setup step, then `shipml run`)
    run_step = next((value for key, value in found.items()
                     if key.endswith("action step") and "rollout" not in key), 0.0)
    setup = next((value for key, value in found.items()
                  if key.endswith(": setup") and "rollout" not in key), 0.0)
    staged = sum(value for key, value in found.items() if key.startswith("stage "))
    found["report + start-ups (step - setup - stages)"] = max(run_step - setup - staged, 0.0)
    return found


def measure(template: str, event: str, runs: int, work: Path, source: Path, docker: bool,
            key: Path | None) -> list[dict[str, float]]:
    """Run ``template`` once to warm up and ``runs`` times measured; return each run's parts."""
    measured = []
    for number in range(runs + 1):
        service = f"shipml-bench-{uuid.uuid4().hex[:8]}"
        config = release_config(service) if docker else PR_CONFIG
        workspace = work / f"{template}-{number}"
        secrets = ({"COSIGN_PRIVATE_KEY": key.read_text(), "COSIGN_PASSWORD": KEY_PASSWORD}
                   if key else None)
        if event == "pull_request":
            # a clone with origin/main: the template's git-ref latency baseline reads it
            prepare_workspace(workspace, config)
            git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
            for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "base"],
                            ["update-ref", "refs/remotes/origin/main", "HEAD"]):
                subprocess.run([*git, *command], cwd=workspace, check=True)
        try:
            run = run_template(template, workspace=workspace, source=source,
                               cache_home=act_cache_home(), event=event, config=config,
                               secrets=secrets)
        finally:
            if docker:
                _remove(service)
        if run.returncode != 0:
            sys.exit(f"{template} failed under act:\n{run.log[-4000:]}")
        if number:  # the first run warms the cache
            measured.append({"act run (total)": run.seconds, **parts(run.log)})
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    subprocess.run(["bash", str(REPO / ".ci" / "services")], check=True, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="shipml-bench-act-") as folder:
        work = Path(folder)
        source = copy_action_source(work / "shipml")
        subprocess.run([str(REPO / ".venv" / "bin" / "shipml"), "keygen", "--output-key-prefix",
                        str(work / "cosign")], env={**os.environ, "COSIGN_PASSWORD": KEY_PASSWORD},
                       check=True, capture_output=True)
        for template, event, docker in (("shipml-pr.yml", "pull_request", False),
                                        ("shipml-release.yml", "push", True)):
            measured = measure(template, event, args.runs, work, source, docker,
                               work / "cosign.key" if docker else None)
            names = list(dict.fromkeys(name for run in measured for name in run))
            print(f"\n{template} through act, {event}, warm cache: median of {len(measured)} runs")
            print(f"{'part':<34}{'seconds':>9}")
            for name in names:
                values = [run[name] for run in measured if name in run]
                print(f"{name:<34}{statistics.median(values):>9.1f}")


if __name__ == "__main__":
    main()
