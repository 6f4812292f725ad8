"""``shipml schema``: print the published JSON Schema of ``shipml.yaml``, or (``--markdown``) the
configuration reference generated from it, one table per section, as docs/reference/configuration.md
carries it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipml.config import schema
from shipml.errors import ConfigError

#: the reference as markdown; docs/reference/configuration.md holds this output (shipml.generate.docs)
REFERENCE_TEMPLATE = """\
{% for section in sections -%}
{% if not loop.first %}
{% endif -%}
## `{{ section.name }}`

{{ section.description }}

| key | type | default | description |
|---|---|---|---|
{% for row in section.rows -%}
| `{{ row.key }}` | {{ row.kind }} | {{ row.default }} | {{ row.description }} |
{% endfor -%}
{%- endfor %}"""


@dataclass(frozen=True)
class Row:
    """One key of the reference: its dotted path (``[]`` for list items), type, default, text."""

    key: str
    kind: str
    default: str
    description: str


@dataclass(frozen=True)
class Section:
    """One section of shipml.yaml and its keys, in the schema's order."""

    name: str
    description: str
    rows: tuple[Row, ...]


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``schema`` subcommand."""
    parser = subparsers.add_parser(
        "schema", help="print the JSON Schema of shipml.yaml (for editors and validation)",
        description="Print the JSON Schema of shipml.yaml, or with --markdown the configuration "
                    "reference generated from it (one table per section: key, type, default, "
                    "description).")
    parser.add_argument("--output", metavar="PATH", help="write to PATH instead of stdout")
    parser.add_argument("--markdown", action="store_true",
                        help="the configuration reference as markdown tables instead of JSON")
    parser.set_defaults(handler=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Print or write the schema (or its markdown reference); return 0.

    Raises ConfigError when ``--output`` is a folder or cannot be written.
    """
    text = reference_markdown() if args.markdown else json.dumps(schema(), indent=2) + "\n"
    if args.output:
        target = Path(args.output)
        if target.is_dir():
            raise ConfigError(f"--output: {target} is a folder; name the file to write, e.g. "
                              f"{target / ('shipml.schema.md' if args.markdown else 'shipml.schema.json')}")
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--output: cannot write {target}: {exc.strerror or exc}") from None
    else:
        print(text, end="")
    return 0


def reference_markdown(document: Mapping[str, Any] | None = None) -> str:
    """Return the configuration reference of ``document`` (default: shipml's schema) as markdown:
    a heading, the description and a table of every key per section."""
    import jinja2

    document = schema() if document is None else document
    environment = jinja2.Environment(autoescape=False, keep_trailing_newline=True,
                                     undefined=jinja2.StrictUndefined)
    return environment.from_string(REFERENCE_TEMPLATE).render(sections=sections(document))


def sections(document: Mapping[str, Any]) -> list[Section]:
    """Return one Section per top-level property of ``document``, keys in schema order."""
    found = []
    for name, node in (document.get("properties") or {}).items():
        found.append(Section(name=name, description=_text(node.get("description", "")),
                             rows=tuple(_rows(node, ""))))
    return found


def _rows(node: Mapping[str, Any], prefix: str) -> Iterator[Row]:
    for name, child in (node.get("properties") or {}).items():
        path = f"{prefix}{name}"
        nested = _object_items(child)
        if child.get("properties"):
            yield from _rows(child, f"{path}.")
        elif nested is not None:
            yield Row(path, "list of objects", _default(child), _text(child.get("description", "")))
            yield from _rows(nested, f"{path}[].")
        else:
            yield Row(path, _kind(child), _default(child), _text(child.get("description", "")))


def _object_items(node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Return the object schema of a list's items, when they are objects with properties."""
    items = node.get("items")
    if not isinstance(items, dict):
        return None
    if items.get("properties"):
        return items
    for choice in items.get("oneOf") or items.get("anyOf") or ():
        if isinstance(choice, dict) and choice.get("properties"):
            return choice
    return None


def _kind(node: Mapping[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in node["enum"])
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    choices = node.get("oneOf") or node.get("anyOf")
    if choices:
        return " or ".join(dict.fromkeys(_kind(choice) for choice in choices))
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    words = []
    for one in kinds:
        if one == "array":
            items = node.get("items")
            inner = _kind(items) if isinstance(items, dict) else ""
            words.append(f"list of {inner}" if inner else "list")
        elif one == "object":
            words.append("mapping")
        else:
            words.append(str(one))
    return " or ".join(words) or "any"


def _default(node: Mapping[str, Any]) -> str:
    if "default" not in node:
        return ""
    return f"`{_text(json.dumps(node['default'], ensure_ascii=False))}`"


def _text(value: object) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")
