"""``shipml.yaml``: loading, the published JSON Schema, defaults and precise errors.

One precedence everywhere: CLI flag > ``SHIPML_*`` environment > ``shipml.yaml`` > default. Flags and
environment variables arrive as :class:`Override` records and are validated by the same schema as the
file, so an error always names where the bad value came from: ``shipml.yaml:12 validate.fail_on`` or
``--fail-on`` or ``SHIPML_FAIL_ON``.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from shipml import stages
from shipml._yaml import KeyPath as KeyPath  # where a key sits: section, keys, list indexes
from shipml._yaml import read_yaml
from shipml.errors import ConfigError, did_you_mean

DEFAULT_CONFIG_NAME = "shipml.yaml"
SCHEMA_ID = "https://shipml.dev/schema/shipml.schema.json"
#: sections in the order they appear in the published schema; each has ``schema/<name>.json``
SECTIONS = stages.sections()


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Override:
    """A single key set from outside the file: by a CLI flag or a ``SHIPML_*`` variable."""

    path: KeyPath
    value: Any
    source: str


@dataclass(frozen=True)
class Config:
    """A validated configuration with defaults filled in, and where each key came from."""

    data: Mapping[str, Any]
    file: Path | None = None
    lines: Mapping[KeyPath, int] = field(default_factory=dict)
    sources: Mapping[KeyPath, str] = field(default_factory=dict)
    #: the top-level sections the file (or an override) wrote, before defaults filled the rest
    written: frozenset[str] = frozenset()

    @property
    def base_dir(self) -> Path:
        """Return the folder relative paths in the file are resolved against."""
        return self.file.parent if self.file is not None else Path.cwd()

    def section(self, name: str) -> dict[str, Any]:
        """Return a deep copy of one top-level section (defaults applied)."""
        return copy.deepcopy(dict(self.data.get(name) or {}))

    def where(self, *path: str | int) -> str:
        """Return a human pointer to a key: the flag or variable that set it, or ``file:line key``."""
        for length in range(len(path), 0, -1):
            source = self.sources.get(tuple(path[:length]))
            if source:
                return source
        if self.file is None:
            return dotted(path)
        for length in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:length]))
            if line:
                return f"{self.file}:{line} {dotted(path)}"
        return f"{self.file} {dotted(path)}"

    def resolve_path(self, value: str | os.PathLike[str], *key: str | int) -> Path:
        """Return ``value`` as a path: flags resolve against the working directory, file keys
        against the config file's folder."""
        path = Path(value).expanduser()
        if path.is_absolute():
            return path
        from_flag = any(self.sources.get(tuple(key[:length])) for length in range(1, len(key) + 1))
        return (Path.cwd() if from_flag else self.base_dir) / path


def parse_bool(text: str, source: str) -> bool:
    """Return the boolean ``text`` spells; raise ConfigError for anything but true/false words."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{source}: {text!r} is not a boolean; use true or false")


def key_schema(path: Sequence[str | int]) -> dict[str, Any]:
    """Return the JSON Schema node of the key at ``path`` (``{}`` where the schema has none)."""
    node: dict[str, Any] = schema()
    for part in path:
        branches = [node, *node.get("oneOf", []), *node.get("anyOf", [])]
        found: dict[str, Any] | None = None
        for branch in branches:
            if isinstance(part, int) and isinstance(branch.get("items"), dict):
                found = branch["items"]
            elif isinstance(part, str) and part in (branch.get("properties") or {}):
                found = branch["properties"][part]
            if found is not None:
                break
        if found is None:
            return {}
        node = found
    return node


def key_types(path: Sequence[str | int]) -> frozenset[str]:
    """Return the JSON types the schema allows for the key at ``path`` (enums by their values)."""
    return _types(key_schema(path))


def _types(node: Mapping[str, Any]) -> frozenset[str]:
    found: set[str] = set()
    declared = node.get("type")
    if isinstance(declared, str):
        found.add(declared)
    elif isinstance(declared, list):
        found.update(str(kind) for kind in declared)
    for choice in node.get("enum", []):
        found.add(_json_type(choice))
    if "const" in node:
        found.add(_json_type(node["const"]))
    for branch in (*node.get("oneOf", []), *node.get("anyOf", [])):
        found |= _types(branch)
    return frozenset(found)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "string"


def typed_override(override: Override) -> Override:
    """Return ``override`` with text converted to the type its key has in the schema.

    Comma-separated text becomes a list for an array key (``none`` is the empty list), digits a
    number for a numeric key, and only true/false words a boolean. Raises ConfigError naming the
    flag or variable when the text cannot be what the key needs.
    """
    if not isinstance(override.value, str):
        return override
    value = _from_text(override.value, key_schema(override.path), override.source)
    return Override(path=override.path, value=value, source=override.source)


def _from_text(text: str, node: Mapping[str, Any], source: str) -> Any:
    types = _types(node)
    stripped = text.strip()
    if "array" in types:
        if stripped.lower() == "none":
            return []
        items: Mapping[str, Any] = next((branch["items"] for branch in (node, *node.get("oneOf", []),
                                                      *node.get("anyOf", []))
                      if isinstance(branch.get("items"), dict)), {})
        return [_from_text(part, items, source) for part in stripped.split(",") if part.strip()]
    solid = types - {"null"}
    if "boolean" in types:
        if stripped.lower() in _TRUE | _FALSE or solid == {"boolean"}:
            return parse_bool(stripped, source)
    if "integer" in types:
        try:
            return int(stripped)
        except ValueError:
            if solid == {"integer"}:
                raise ConfigError(f"{source}: {text!r} is not a whole number") from None
    if "number" in types:
        try:
            return float(stripped)
        except ValueError:
            if solid <= {"number", "integer"}:
                raise ConfigError(f"{source}: {text!r} is not a number") from None
    return text


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """Return the published JSON Schema of ``shipml.yaml``, assembled from one file per section."""
    root = resources.files("shipml") / "schema"
    properties = {}
    for name in stages.sections():
        properties[name] = json.loads((root / f"{name}.json").read_text(encoding="utf-8"))
    _registry_defaults(properties)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "shipml configuration (shipml.yaml)",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


def _registry_defaults(properties: dict[str, Any]) -> None:
    # A default that names stages (sign.gates) is the registry's, never a list in a section file.
    for path, value in stages.registry_defaults().items():
        node = properties[path[0]]
        for part in path[1:]:
            node = node["properties"][part]
        node["default"] = value


#: act in host mode with -b binds nothing and copies nothing: the job starts in an empty folder
ACT_EMPTY_WORKSPACE = (
    "{source}: config file {chosen} not found: the workspace {workspace} is empty. act in host "
    "mode (-P ubuntu-latest=-self-hosted) with -b (--bind) neither copies nor binds your "
    "checkout; run act without -b. To keep the results and reports after act, pass "
    "--env SHIPML_OUTPUT_DIR=\"$PWD/.shipml\" (the workflow templates hand it to output-dir)")


def find_config(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """Return the config file to read: ``--config``, ``SHIPML_CONFIG`` or ``./shipml.yaml``.

    An explicit path that does not exist raises ConfigError; a missing default file returns None,
    except under act in an empty workspace (``act -b`` in host mode), which raises ConfigError.
    """
    env = os.environ if environ is None else environ
    chosen = explicit or env.get("SHIPML_CONFIG") or ""
    source = "--config" if explicit else "environment SHIPML_CONFIG"
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            _refuse_an_empty_act_workspace(source, chosen, env)
            raise ConfigError(f"{source}: config file {chosen} not found")
        return path
    default = Path(DEFAULT_CONFIG_NAME)
    if not default.is_file():
        _refuse_an_empty_act_workspace("the default", DEFAULT_CONFIG_NAME, env)
    return default if default.is_file() else None


def _refuse_an_empty_act_workspace(source: str, chosen: str, env: Mapping[str, str]) -> None:
    """Raise ConfigError when this runs under act in a workspace that holds nothing."""
    workspace = env.get("GITHUB_WORKSPACE", "")
    if env.get("ACT", "").lower() != "true" or not workspace or not Path(workspace).is_dir():
        return
    if not any(Path(workspace).iterdir()):
        raise ConfigError(ACT_EMPTY_WORKSPACE.format(source=source, chosen=chosen,
                                                     workspace=workspace))


def load_config(path: Path | None, overrides: Iterable[Override] = ()) -> Config:
    """Read, validate and default a config file (or none), then apply overrides.

    Raises ConfigError naming the file, line and key path for YAML syntax errors, unknown keys
    (with the nearest valid key), wrong types and invalid values.
    """
    data: dict[str, Any] = {}
    lines: dict[KeyPath, int] = {}
    if path is not None:
        data, lines = _read_yaml(path)
    sources: dict[KeyPath, str] = {}
    for override in overrides:
        override = typed_override(override)
        _set_path(data, override.path, override.value)
        sources[override.path] = override.source
    config = Config(data=data, file=path, lines=lines, sources=sources,
                    written=frozenset(str(key) for key in data))
    _validate(config)
    _apply_defaults(config.data, schema())  # type: ignore[arg-type]
    return config


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    # Size, nesting and alias limits, one composition for data and lines: see shipml._yaml.
    data, lines = read_yaml(path)
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:1: the top level must be a mapping of sections "
            f"({', '.join(SECTIONS)}), got {type(data).__name__}"
        )
    return data, lines


def _set_path(data: dict[str, Any], path: Sequence[str | int], value: Any) -> None:
    # Overrides set mapping keys only: an option never addresses an item of a list.
    keys = [str(part) for part in path]
    cursor = data
    for part in keys[:-1]:
        nxt = cursor.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cursor[part] = nxt
        cursor = nxt
    cursor[keys[-1]] = value


def _validate(config: Config) -> None:
    jsonschema = _jsonschema()
    validator_cls = jsonschema.validators.validator_for(schema())
    validator = validator_cls(schema())
    errors = sorted(validator.iter_errors(config.data), key=lambda e: (len(e.path), list(map(str, e.path))))
    if not errors:
        return
    error = _deepest(errors[0])
    raise ConfigError(_describe(error, config))


def _jsonschema() -> Any:
    """Return the jsonschema module, imported without ``rfc3987_syntax``.

    jsonschema registers an IRI format checker when that package is installed (deepchecks'
    dependencies bring it), and importing it compiles lark grammars for seconds on every command.
    shipml's schema uses no IRI format, so the import is made to skip it; later imports of the
    package elsewhere are unaffected.
    """
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        import jsonschema

        return jsonschema
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # makes its import fail
    try:
        import jsonschema
    finally:
        del sys.modules["rfc3987_syntax"]
    return jsonschema


def _deepest(error: Any) -> Any:
    """Return the error that says most about ``error``: for a oneOf/anyOf, the best error of the
    one branch of the value's own kind (an object's branch for an object), never a branch of
    another kind; the oneOf/anyOf itself when no branch is of its kind, or several are."""
    if not error.context or error.validator not in ("oneOf", "anyOf"):
        return error
    branches: dict[Any, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    of_its_kind = [errors for errors in branches.values()
                   if not any(_wrong_kind(sub) for sub in errors)]
    if len(of_its_kind) != 1:
        return error
    return _deepest(_jsonschema().exceptions.best_match(of_its_kind[0]))


def _wrong_kind(error: Any) -> bool:
    # A type, const or enum refusal of the value itself: the branch is for another kind of value;
    # so is a mapping's branch whose required key the mapping lacks ({weight: 150} is no shadow step).
    return not error.relative_path and error.validator in ("type", "const", "enum", "required")


def _describe(error: Any, config: Config) -> str:
    path = tuple(error.absolute_path)
    node: Any = error.schema
    if error.validator == "additionalProperties":
        allowed = sorted((node.get("properties") or {}).keys())
        instance = error.instance if isinstance(error.instance, dict) else {}
        unknown = [key for key in instance if key not in allowed]
        key = str(unknown[0]) if unknown else "?"
        where = config.where(*path, key)
        hint = did_you_mean(key, allowed)
        return (
            f"{where}: unknown key {dotted(path + (key,))!r}{hint} "
            f"(valid keys here: {', '.join(allowed)})"
        )
    where = config.where(*path) if path else (str(config.file) if config.file else "config")
    if error.validator == "enum":
        choices: Any = error.validator_value
        valid = ", ".join(str(choice) for choice in choices)
        return f"{where}: {error.instance!r} is not valid; valid: {valid}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator in ("oneOf", "anyOf"):
        kinds = [branch.get("description") or _valid_values(branch)
                 for branch in error.validator_value if isinstance(branch, dict)]
        return f"{where}: {error.instance!r} is not valid; valid: {' or '.join(kinds)}"
    description = node.get("description") if isinstance(node, dict) else None
    hint = f" ({description})" if description else ""
    valid = _valid_values(node) if error.validator in _RANGE_VALIDATORS else ""
    return f"{where}: {error.message}{'; valid: ' + valid if valid else ''}{hint}"


_RANGE_VALIDATORS = frozenset({"type", "minimum", "maximum", "exclusiveMinimum",
                               "exclusiveMaximum", "const"})
_KIND_NAMES = {"integer": "a whole number", "number": "a number", "string": "text",
               "boolean": "true or false", "array": "a list", "object": "a mapping",
               "null": "null (unset)"}


def _number(value: Any) -> str:
    # whole numbers as written (1048576, not :g's 1.04858e+06), others without trailing zeros
    return str(int(value)) if float(value).is_integer() else f"{value:.12g}"


def _valid_values(node: Any) -> str:
    """Return what a schema node accepts, as a user would say it: ``a whole number from 1 to
    100``, ``'auto'``, ``text or null (unset)``; '' when the node says nothing plain."""
    if not isinstance(node, dict):
        return ""
    if "const" in node:
        return repr(node["const"])
    kinds = node.get("type")
    names = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if not names:
        return ""
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    bounds = ""
    if "minimum" in node and "maximum" in node:
        bounds = f" from {_number(low)} to {_number(high)}"
    elif low is not None:
        bounds = f" {'of at least' if 'minimum' in node else 'above'} {_number(low)}"
    elif high is not None:
        bounds = f" {'of at most' if 'maximum' in node else 'below'} {_number(high)}"
    said = [_KIND_NAMES.get(name, name) + (bounds if name in ("integer", "number") else "")
            for name in names]
    return " or ".join(said)


def _apply_defaults(data: dict[str, Any], node: Mapping[str, Any]) -> None:
    for key, sub in (node.get("properties") or {}).items():
        if key not in data:
            if "default" in sub:
                data[key] = copy.deepcopy(sub["default"])
            elif sub.get("type") == "object" and "properties" in sub:
                data[key] = {}
        if isinstance(data.get(key), dict) and sub.get("type") == "object":
            _apply_defaults(data[key], sub)


def dotted(path: Sequence[str | int]) -> str:
    """Return ``path`` as the user writes it: ``latency.baseline.tolerance``, ``checks[2].name``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
