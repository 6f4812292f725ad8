"""``shipml.yaml``: loading, the published JSON Schema, defaults and precise errors.

One precedence everywhere: CLI flag > ``SHIPML_*`` environment > ``shipml.yaml`` > default. Flags and
environment variables arrive as :class:`Override` records and are validated by the same schema as the
file, so an error always names where the bad value came from: ``shipml.yaml:12 validate.fail_on`` or
``--fail-on`` or ``SHIPML_FAIL_ON``.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from shipml.errors import ConfigError

DEFAULT_CONFIG_NAME = "shipml.yaml"
SCHEMA_ID = "https://shipml.dev/schema/shipml.schema.json"
#: sections in the order they appear in the published schema; each has ``schema/<name>.json``
SECTIONS = ("model", "validate", "optimize", "latency", "report")

KeyPath = tuple[str | int, ...]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Override:
    """A single key set from outside the file: by a CLI flag or a ``SHIPML_*`` variable."""

    path: tuple[str, ...]
    value: Any
    source: str


@dataclass(frozen=True)
class Config:
    """A validated configuration with defaults filled in, and where each key came from."""

    data: Mapping[str, Any]
    file: Path | None = None
    lines: Mapping[KeyPath, int] = field(default_factory=dict)
    sources: Mapping[tuple[str, ...], str] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """Return the folder relative paths in the file are resolved against."""
        return self.file.parent if self.file is not None else Path.cwd()

    def section(self, name: str) -> dict[str, Any]:
        """Return a deep copy of one top-level section (defaults applied)."""
        return copy.deepcopy(dict(self.data.get(name) or {}))

    def where(self, *path: str | int) -> str:
        """Return a human pointer to a key: the flag or variable that set it, or ``file:line key``."""
        dotted = _dotted(path)
        for length in range(len(path), 0, -1):
            source = self.sources.get(tuple(str(part) for part in path[:length]))
            if source:
                return source
        if self.file is None:
            return dotted
        for length in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:length]))
            if line:
                return f"{self.file}:{line} {dotted}"
        return f"{self.file} {dotted}"

    def resolve_path(self, value: str | os.PathLike[str], *key: str | int) -> Path:
        """Return ``value`` as a path: flags resolve against the working directory, file keys
        against the config file's folder."""
        path = Path(value).expanduser()
        if path.is_absolute():
            return path
        from_flag = any(
            self.sources.get(tuple(str(part) for part in key[:length]))
            for length in range(1, len(key) + 1)
        )
        return (Path.cwd() if from_flag else self.base_dir) / path


def parse_bool(text: str, source: str) -> bool:
    """Return the boolean ``text`` spells; raise ConfigError for anything but true/false words."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{source}: {text!r} is not a boolean; use true or false")


def env_overrides(
    environ: Mapping[str, str], mapping: Mapping[str, tuple[str, ...]]
) -> list[Override]:
    """Return overrides for each ``SHIPML_*`` variable in ``mapping`` that is set and not empty."""
    found = []
    for variable, path in mapping.items():
        value = environ.get(variable, "")
        if value.strip():
            found.append(Override(path=path, value=value, source=f"environment {variable}"))
    return found


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """Return the published JSON Schema of ``shipml.yaml``, assembled from one file per section."""
    root = resources.files("shipml") / "schema"
    properties = {}
    for name in SECTIONS:
        properties[name] = json.loads((root / f"{name}.json").read_text(encoding="utf-8"))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "shipml configuration (shipml.yaml)",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


def find_config(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """Return the config file to read: ``--config``, ``SHIPML_CONFIG`` or ``./shipml.yaml``.

    An explicit path that does not exist raises ConfigError; a missing default file returns None.
    """
    env = os.environ if environ is None else environ
    chosen = explicit or env.get("SHIPML_CONFIG") or ""
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            source = "--config" if explicit else "environment SHIPML_CONFIG"
            raise ConfigError(f"{source}: config file {chosen} not found")
        return path
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None


def load_config(path: Path | None, overrides: Iterable[Override] = ()) -> Config:
    """Read, validate and default a config file (or none), then apply overrides.

    Raises ConfigError naming the file, line and key path for YAML syntax errors, unknown keys
    (with the nearest valid key), wrong types and invalid values.
    """
    data: dict[str, Any] = {}
    lines: dict[KeyPath, int] = {}
    if path is not None:
        data, lines = _read_yaml(path)
    sources: dict[tuple[str, ...], str] = {}
    for override in overrides:
        _set_path(data, override.path, override.value)
        sources[override.path] = override.source
    config = Config(data=data, file=path, lines=lines, sources=sources)
    _validate(config)
    _apply_defaults(config.data, schema())  # type: ignore[arg-type]
    return config


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML syntax error: {exc}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:1: the top level must be a mapping of sections "
            f"({', '.join(SECTIONS)}), got {type(data).__name__}"
        )
    lines: dict[KeyPath, int] = {}
    _record_lines(node, (), lines)
    return data, lines


def _record_lines(node: yaml.Node | None, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    if node is None:
        return
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[path + (key,)] = key_node.start_mark.line + 1
            _record_lines(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, path + (index,), lines)


def _set_path(data: dict[str, Any], path: Sequence[str], value: Any) -> None:
    cursor = data
    for part in path[:-1]:
        nxt = cursor.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cursor[part] = nxt
        cursor = nxt
    cursor[path[-1]] = value


def _validate(config: Config) -> None:
    validator_cls = jsonschema.validators.validator_for(schema())
    validator = validator_cls(schema())
    errors = sorted(validator.iter_errors(config.data), key=lambda e: (len(e.path), list(map(str, e.path))))
    if not errors:
        return
    error = _deepest(errors[0])
    raise ConfigError(_describe(error, config))


def _deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    # For oneOf/anyOf the most specific sub-error says more than "is not valid under any".
    if error.context:
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None and len(best.absolute_path) >= len(error.absolute_path):
            return _deepest(best)
    return error


def _describe(error: jsonschema.ValidationError, config: Config) -> str:
    path = tuple(error.absolute_path)
    node: Any = error.schema
    if error.validator == "additionalProperties":
        allowed = sorted((node.get("properties") or {}).keys())
        instance = error.instance if isinstance(error.instance, dict) else {}
        unknown = [key for key in instance if key not in allowed]
        key = str(unknown[0]) if unknown else "?"
        where = config.where(*path, key)
        nearest = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
        hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
        return (
            f"{where}: unknown key {_dotted(path + (key,))!r}{hint} "
            f"(valid keys here: {', '.join(allowed)})"
        )
    where = config.where(*path) if path else (str(config.file) if config.file else "config")
    if error.validator == "enum":
        choices: Any = error.validator_value
        valid = ", ".join(str(choice) for choice in choices)
        return f"{where}: {error.instance!r} is not valid; valid: {valid}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    description = node.get("description") if isinstance(node, dict) else None
    hint = f" ({description})" if description else ""
    return f"{where}: {error.message}{hint}"


def _apply_defaults(data: dict[str, Any], node: Mapping[str, Any]) -> None:
    for key, sub in (node.get("properties") or {}).items():
        if key not in data:
            if "default" in sub:
                data[key] = copy.deepcopy(sub["default"])
            elif sub.get("type") == "object" and "properties" in sub:
                data[key] = {}
        if isinstance(data.get(key), dict) and sub.get("type") == "object":
            _apply_defaults(data[key], sub)


def _dotted(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
