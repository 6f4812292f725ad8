"""A small stand-in for the GitHub runner: executes a composite action's ``run:`` steps as it does.

What it reproduces, because the actions' safety depends on it:

* ``${{ … }}`` expressions are substituted into ``env:`` values, ``working-directory:`` and the
  ``run:`` text itself *before* the script is written (so an expression inside ``run:`` would be
  as injectable here as on GitHub); ``env:`` values reach the process verbatim, no shell involved;
* ``shell: bash`` is ``bash --noprofile --norc -eo pipefail SCRIPT``;
* each step gets its own ``GITHUB_OUTPUT`` file, parsed with the runner's rules (``name=value`` or
  ``name<<DELIMITER`` … ``DELIMITER``) into ``steps.<id>.outputs``; ``GITHUB_PATH`` lines are put in
  front of ``PATH`` for later steps;
* a failing step stops the action; the action's outputs are its ``outputs.*.value`` expressions.

``uses:`` steps (actions/cache, actions/setup-python) are JavaScript actions that only GitHub runs:
they are recorded as skipped, with empty outputs, which is what a cache miss looks like to the steps
after them. Expressions outside the small grammar below raise instead of guessing.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.DOTALL)
_COMPARISON = re.compile(r"^(?P<left>[\w.-]+)\s*(?P<op>==|!=)\s*'(?P<right>[^']*)'$")

#: environment passed through from the machine running the tests (pip needs its configuration)
_PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


@dataclass
class StepRun:
    """What one step did: its id, whether it ran, its exit code, outputs and logs."""

    step_id: str
    ran: bool
    returncode: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    stdout: str = ""
    stderr: str = ""
    output_file_text: str = ""


@dataclass
class ActionRun:
    """The whole action: every step in order and the action's own outputs."""

    steps: list[StepRun]
    outputs: dict[str, str]
    #: lines the steps appended to $GITHUB_PATH, and the job summary they wrote
    github_path: list[str]
    summary: str

    @property
    def failed(self) -> bool:
        return any(step.returncode != 0 for step in self.steps)

    def step(self, step_id: str) -> StepRun:
        return next(step for step in self.steps if step.step_id == step_id)

    @property
    def log(self) -> str:
        return "\n".join(f"--- {s.step_id} rc={s.returncode}\n{s.stdout}{s.stderr}" for s in self.steps)


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


class _Context:
    def __init__(self, inputs: Mapping[str, str], github: Mapping[str, str],
                 runner: Mapping[str, str]) -> None:
        self.inputs = inputs
        self.github = github
        self.runner = runner
        self.steps: dict[str, dict[str, str]] = {}

    def lookup(self, path: str) -> str:
        parts = path.split(".")
        if parts[0] == "inputs" and len(parts) == 2:
            return self.inputs[parts[1]]
        if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            # A step that did not run (or did not set the output) reads as the empty string.
            return self.steps.get(parts[1], {}).get(parts[3], "")
        if parts[0] == "github" and len(parts) == 2:
            return self.github[parts[1]]
        if parts[0] == "runner" and len(parts) == 2:
            return self.runner[parts[1]]
        raise KeyError(f"the harness does not know the expression context {path!r}")

    def evaluate(self, expression: str) -> str:
        """Evaluate ``a.b.c``, ``x == 'lit'``, ``x != 'lit'`` joined by ``||`` or ``&&``."""
        if "||" in expression:
            truth = any(self.evaluate(part.strip()) == "true" for part in expression.split("||"))
            return "true" if truth else "false"
        if "&&" in expression:
            truth = all(self.evaluate(part.strip()) == "true" for part in expression.split("&&"))
            return "true" if truth else "false"
        comparison = _COMPARISON.match(expression)
        if comparison:
            equal = self.lookup(comparison["left"]) == comparison["right"]
            return "true" if equal == (comparison["op"] == "==") else "false"
        if re.fullmatch(r"[\w.-]+", expression):
            return self.lookup(expression)
        raise KeyError(f"the harness cannot evaluate {expression!r}")

    def substitute(self, text: str) -> str:
        return _EXPRESSION.sub(lambda match: self.evaluate(match.group(1)), text)


def run_action(
    action_dir: Path,
    inputs: Mapping[str, str],
    *,
    workspace: Path,
    runner_temp: Path,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 900,
) -> ActionRun:
    """Run the composite action in ``action_dir`` with ``inputs``; return every step and the outputs.

    Raises KeyError for an input the action does not declare (GitHub only warns, but a test that
    passes one has a typo) and for expressions the harness cannot evaluate.
    """
    action = load_action(action_dir)
    declared = action.get("inputs") or {}
    unknown = set(inputs) - set(declared)
    if unknown:
        raise KeyError(f"inputs not declared by {action_dir}/action.yml: {sorted(unknown)}")
    resolved_inputs = {name: str(spec.get("default", "")) for name, spec in declared.items()}
    resolved_inputs.update(inputs)

    runner_temp.mkdir(parents=True, exist_ok=True)
    workspace.mkdir(parents=True, exist_ok=True)
    files = Path(tempfile.mkdtemp(prefix="_runner_", dir=runner_temp))
    summary = files / "step_summary.md"
    path_file = files / "github_path"
    env_file = files / "github_env"
    for file in (summary, path_file, env_file):
        file.touch()

    context = _Context(
        resolved_inputs,
        github={"action_path": str(action_dir), "workspace": str(workspace)},
        runner={"temp": str(runner_temp), "os": "Linux", "arch": "X64"},
    )
    base_env = {name: os.environ[name] for name in _PASS_THROUGH if name in os.environ}
    base_env.update({name: value for name, value in os.environ.items() if name.startswith("PIP_")})
    base_env.update({
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_ACTION_PATH": str(action_dir),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_PATH": str(path_file),
        "GITHUB_ENV": str(env_file),
        "RUNNER_TEMP": str(runner_temp),
        "RUNNER_OS": "Linux",
        "RUNNER_ARCH": "X64",
    })
    base_env.update(extra_env or {})

    steps: list[StepRun] = []
    for number, step in enumerate(action["runs"]["steps"]):
        step_id = str(step.get("id") or f"__step{number}")
        if "uses" in step:
            steps.append(StepRun(step_id=step_id, ran=False))
            continue
        if "if" in step:
            raise KeyError(f"step {step_id}: the harness runs `run:` steps without `if:` only")
        if step.get("shell") != "bash":
            raise KeyError(f"step {step_id}: only `shell: bash` is supported, got {step.get('shell')!r}")
        output_file = files / f"output_{number}"
        output_file.write_text("", encoding="utf-8")
        script = files / f"step_{number}.sh"
        script.write_text(context.substitute(str(step["run"])), encoding="utf-8")
        env = dict(base_env)
        env.update({name: context.substitute(str(value)) for name, value in (step.get("env") or {}).items()})
        env["GITHUB_OUTPUT"] = str(output_file)
        extra_path = [line for line in path_file.read_text(encoding="utf-8").splitlines() if line]
        if extra_path:
            env["PATH"] = os.pathsep.join([*reversed(extra_path), env.get("PATH", "")])
        cwd = workspace / context.substitute(str(step.get("working-directory", ".")))
        completed = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )
        output_text = output_file.read_text(encoding="utf-8")
        outputs = parse_output_file(output_text)
        context.steps[step_id] = outputs
        steps.append(StepRun(step_id=step_id, ran=True, returncode=completed.returncode,
                             outputs=outputs, stdout=completed.stdout, stderr=completed.stderr,
                             output_file_text=output_text))
        if completed.returncode != 0:
            break

    action_outputs = {
        name: context.substitute(str(spec.get("value", "")))
        for name, spec in (action.get("outputs") or {}).items()
    }
    return ActionRun(
        steps=steps,
        outputs=action_outputs,
        github_path=[line for line in path_file.read_text(encoding="utf-8").splitlines() if line],
        summary=summary.read_text(encoding="utf-8"),
    )
