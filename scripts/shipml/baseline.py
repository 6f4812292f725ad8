"""The baseline model of a comparison: a file, or a file read from a git ref.

latency times the candidate against it; validate judges the candidate's quality against it. Both
read ``<section>.baseline.path`` and ``<section>.baseline.git_ref`` through this one resolver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from shipml.config import Config
from shipml.errors import ConfigError

FETCH_HINT = (
    "make the ref available first, e.g. in the workflow:\n"
    "  - uses: actions/checkout@<sha>\n    with:\n      fetch-depth: 0"
)


def resolve_baseline(config: Config, section: str, model_path: Path, scratch: Path
                     ) -> tuple[Path, str] | None:
    """Return ``(file, description)`` of the baseline ``<section>.baseline`` names, or None when
    it names none (neither ``path`` nor ``git_ref``).

    A ``git_ref`` reads the file with ``git show REF:PATH`` into ``scratch``. Raises ConfigError
    for a missing file, a ref or path git does not know, or git not installed.
    """
    baseline = config.section(section).get("baseline") or {}
    path_value, git_ref = baseline.get("path"), baseline.get("git_ref")
    if not git_ref:
        if not path_value:
            return None
        path = config.resolve_path(path_value, section, "baseline", "path")
        if not path.is_file():
            raise ConfigError(
                f"{config.where(section, 'baseline', 'path')}: baseline model {path} not found")
        return path, str(path)
    where = config.where(section, "baseline", "git_ref")
    check_git_ref(str(git_ref), where)
    git = shutil.which("git")
    if git is None:
        raise ConfigError(f"{where}: git_ref {git_ref!r} needs git, which is not installed")
    workdir = config.base_dir if config.file is not None else Path.cwd()
    top = _git(git, ["rev-parse", "--show-toplevel"], workdir, where)
    root = Path(top.decode().strip())
    if path_value:
        inside = str(path_value).lstrip("/")
    else:
        # The shipped artifact as it was at the ref (model.path), also when what is measured is
        # another file, such as optimize's output under .shipml/ that git never saw.
        model = config.section("model")
        tracked = (config.resolve_path(model["path"], "model", "path") if model.get("path")
                   else model_path)
        try:
            inside = os.path.relpath(tracked.resolve(), root.resolve())
        except ValueError:
            inside = str(tracked)
        if inside.startswith(".."):
            raise ConfigError(
                f"{where}: the model {tracked} is outside the repository {root}; set "
                f"{section}.baseline.path to its path inside the repository"
            )
    inside = inside.replace(os.sep, "/")
    # --end-of-options: whatever the ref says, git reads it as a revision, never as an option.
    content = _git(git, ["show", "--end-of-options", f"{git_ref}:{inside}"], root, where)
    if not content:
        raise ConfigError(f"{where}: {git_ref}:{inside} is empty")
    target = scratch / f"{section}-baseline.onnx"
    target.write_bytes(content)
    return target, f"{git_ref}:{inside}"


def check_git_ref(git_ref: str, where: str) -> None:
    """Raise ConfigError for a ref git could take as an option or that holds control
    characters; return None for one it can only read as a revision."""
    if git_ref.startswith("-"):
        raise ConfigError(
            f"{where}: git_ref {git_ref!r} starts with '-', which git would read as an option; "
            f"give a branch, tag or commit, e.g. origin/main"
        )
    if any(ord(char) < 32 or ord(char) == 127 for char in git_ref):
        raise ConfigError(f"{where}: git_ref {git_ref!r} holds control characters; give a "
                          f"branch, tag or commit, e.g. origin/main")


def _git(git: str, arguments: list[str], cwd: Path, where: str) -> bytes:
    completed = subprocess.run([git, *arguments], cwd=cwd, capture_output=True, check=False)
    if completed.returncode != 0:
        message = [line for line in completed.stderr.decode(errors="replace").splitlines()
                   if line.strip()]
        first = message[0].strip() if message else f"exit code {completed.returncode}"
        raise ConfigError(f"{where}: `git {' '.join(arguments)}` failed: {first}\n{FETCH_HINT}")
    return completed.stdout


