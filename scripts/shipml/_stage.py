"""What every stage's command shares: its configuration from flags, environment and file, and
its non-passing checks as annotations."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any

from shipml.ci import Platform
from shipml.ci._platform import AnnotationLevel
from shipml.config import Config, Override, env_overrides, find_config, load_config
from shipml.results import StageResult

KeyPath = tuple[str, ...]


def stage_config(args: argparse.Namespace, environment: Mapping[str, KeyPath],
                 flags: Mapping[str, tuple[object, KeyPath]],
                 convert: Callable[[Override], Override] | None = None) -> Config:
    """Load the config with ``SHIPML_*`` variables, then flags (flag value, key) applied over it.

    ``convert`` turns each override's text into the key's type (lists, numbers, booleans).
    """
    overrides = env_overrides(os.environ, environment)
    for flag, (value, path) in flags.items():
        if value is not None:
            overrides.append(Override(path=path, value=value, source=flag))
    if convert is not None:
        overrides = [convert(override) for override in overrides]
    return load_config(find_config(args.config), overrides)


def split_lists(keys: Collection[KeyPath]) -> Callable[[Override], Override]:
    """Return a converter that turns the text of an override of one of ``keys`` into a list
    (comma-separated, blanks dropped), for ``stage_config``."""
    def convert(override: Override) -> Override:
        if override.path in keys and isinstance(override.value, str):
            items = [item.strip() for item in override.value.split(",") if item.strip()]
            return Override(path=override.path, value=items, source=override.source)
        return override
    return convert


def render_summary(package: str, template: str, **context: Any) -> str:
    """Return the job-summary markdown a stage renders from ``package``'s ``templates/``."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"), autoescape=False,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    return environment.get_template(template).render(**context)


def annotate_checks(result: StageResult, config: Config, platform: Platform) -> None:
    """Annotate each check that did not pass, at the stage's section of the config file."""
    file = str(config.file) if config.file is not None else None
    line = config.lines.get((result.stage,)) if file else None
    for check in result.checks:
        if check.status == "pass":
            continue
        level: AnnotationLevel = "warning" if check.status == "warn" else "error"
        platform.annotate(level, f"{check.name} — {check.detail}", file=file, line=line,
                          title=f"shipml {result.stage}: {check.status.upper()}")
