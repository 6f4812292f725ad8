"""Reading ``shipml.yaml`` safely: bounded size, nesting and aliases, one pass, lines kept.

A config file comes from a pull request, so it is read as untrusted input. PyYAML's safe loader
still lets a small file grow without bound through aliases (the "billion laughs": nine anchors
of ten aliases each expand to 10^9 nodes for whoever walks the data), recurse forever through an
alias inside its own anchor, and overflow the stack with deep nesting. Here the document is
composed once, by PyYAML's own composer over libyaml's events where libyaml is present, with
these limits checked as each node arrives:

- the file is at most :data:`MAX_BYTES` (1 MiB, far above any real configuration);
- collections nest at most :data:`MAX_DEPTH` (64) levels;
- at most :data:`MAX_ALIASES` (100) aliases, which together expand to at most
  :data:`MAX_ALIAS_NODES` (10,000) nodes, and no alias inside the node it names;
- no key twice in one mapping (the first value would be lost without a word).

The same nodes give the data (PyYAML's safe constructor) and the line of every key path, so
messages can say ``shipml.yaml:12 validate.fail_on``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from shipml.errors import ConfigError

#: a key's place in the document: mapping keys and sequence indexes from the top
KeyPath = tuple[str | int, ...]

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASES = 100
MAX_ALIAS_NODES = 10_000

TOO_LARGE = "{path}: the config file is {size} bytes; shipml reads at most {limit:,} bytes (1 MiB)"
TOO_DEEP = "nesting deeper than {limit} levels; a shipml.yaml needs a few"
TOO_MANY_ALIASES = ("more than {limit} aliases (*name); write the values out, or use fewer "
                    "anchors")
TOO_LARGE_EXPANSION = ("aliases expand to more than {limit} values (an alias bomb?); write the "
                       "values out")
RECURSIVE_ALIAS = "alias *{anchor} refers to a node that contains it (a recursive alias)"
DUPLICATE_KEY = "key {key!r} appears twice in one mapping (first at line {first}); keep one"

_MERGE_TAG = "tag:yaml.org,2002:merge"

_Parser: type[Any]
try:  # libyaml's parser makes the events; PyYAML's composer (below) builds the nodes from them
    from yaml.cyaml import CParser as _Parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)


class _Refused(Exception):
    """A limit was hit at ``mark``; turned into a ConfigError naming the file and line."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.mark = mark


# PyYAML's stubs type the composer alone (and its anchor arguments wrongly); it runs mixed with a
# parser and a resolver, which is what its methods call on ``self``.
_Composer: Any = Composer


class _BoundedComposer(_Composer):  # type: ignore[misc]
    """PyYAML's composer with limits on depth and aliases, and each node's expanded size."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.aliases = 0
        self.alias_nodes = 0
        # expanded size of each finished node, by id(): what an alias to it adds
        self.sizes: dict[int, int] = {}
        self.open_nodes: set[int] = set()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                if id(target) in self.open_nodes:
                    raise _Refused(RECURSIVE_ALIAS.format(anchor=event.anchor), event.start_mark)
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    raise _Refused(TOO_MANY_ALIASES.format(limit=MAX_ALIASES), event.start_mark)
                self.alias_nodes += self.sizes[id(target)]
                if self.alias_nodes > MAX_ALIAS_NODES:
                    raise _Refused(TOO_LARGE_EXPANSION.format(limit=MAX_ALIAS_NODES),
                                   event.start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        event = self.peek_event()
        nested = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if nested:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _Refused(TOO_DEEP.format(limit=MAX_DEPTH), event.start_mark)
        node: yaml.Node = super().compose_node(parent, index)
        if nested:
            self.depth -= 1
        return node

    def compose_sequence_node(self, anchor: str | None) -> yaml.SequenceNode:
        # Compose the children through a node registered as open, so an alias to it is refused.
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(yaml.SequenceNode, None, start.implicit)
        node = yaml.SequenceNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        self.open_nodes.add(id(node))
        size = 1
        index = 0
        while not self.check_event(yaml.SequenceEndEvent):
            item = self.compose_node(node, index)
            node.value.append(item)
            size += self.sizes[id(item)]
            index += 1
        node.end_mark = self.get_event().end_mark
        self.open_nodes.discard(id(node))
        self.sizes[id(node)] = size
        return node

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(yaml.MappingNode, None, start.implicit)
        node = yaml.MappingNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        self.open_nodes.add(id(node))
        size = 1
        seen: dict[str, int] = {}
        while not self.check_event(yaml.MappingEndEvent):
            key = self.compose_node(node, None)
            if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                if key.value in seen:
                    raise _Refused(DUPLICATE_KEY.format(key=key.value, first=seen[key.value]),
                                   key.start_mark)
                seen[key.value] = key.start_mark.line + 1
            value = self.compose_node(node, key)
            node.value.append((key, value))
            size += self.sizes[id(key)] + self.sizes[id(value)]
        node.end_mark = self.get_event().end_mark
        self.open_nodes.discard(id(node))
        self.sizes[id(node)] = size
        return node

    def compose_scalar_node(self, anchor: str | None) -> yaml.ScalarNode:
        node: yaml.ScalarNode = super().compose_scalar_node(anchor)
        self.sizes[id(node)] = 1
        return node


class _Loader(_BoundedComposer, _Parser, SafeConstructor, Resolver):  # type: ignore[misc]
    """libyaml's events, the bounded composer, PyYAML's safe constructor."""

    def __init__(self, text: str) -> None:
        _Parser.__init__(self, text)
        _BoundedComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


def read_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Return the one document in the YAML file ``path`` and the line of every key path in it.

    The data is what ``yaml.safe_load`` gives (None for an empty file). Raises ConfigError naming
    the file, and the line where known, for a missing or unreadable file, a file over
    :data:`MAX_BYTES`, YAML syntax errors, nesting over :data:`MAX_DEPTH`, too many or recursive
    aliases, and a key given twice in one mapping.
    """
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        size = _size(path, len(raw))
        raise ConfigError(TOO_LARGE.format(path=path, size=size, limit=MAX_BYTES))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _Refused as refused:
        raise ConfigError(f"{_where(path, refused.mark)}: {refused.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if "maximum nesting depth" in problem:  # libyaml's own limit (1000) met while scanning
            raise ConfigError(f"{_where(path, mark)}: {TOO_DEEP.format(limit=MAX_DEPTH)}") from None
        raise ConfigError(f"{_where(path, mark)}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML syntax error: {exc}") from None
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}
    if node is not None:
        record_lines(node, lines)
    return data, lines


def record_lines(root: yaml.Node, lines: dict[KeyPath, int]) -> None:
    """Add to ``lines`` the 1-based line of every key path under ``root`` (first one wins).

    Iterative, so nesting costs no stack; a node reached through an alias is walked again under
    each path that names it, which the alias limits keep small.
    """
    pending: list[tuple[yaml.Node, KeyPath]] = [(root, ())]
    while pending:
        node, path = pending.pop()
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # a complex key is refused by the schema, which names it
                key_path = (*path, key_node.value)
                lines.setdefault(key_path, key_node.start_mark.line + 1)
                pending.append((value_node, key_path))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend((item, (*path, index)) for index, item in enumerate(node.value))


def _where(path: Path, mark: yaml.Mark | None) -> str:
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)


def _size(path: Path, read: int) -> str:
    try:
        return f"{path.stat().st_size:,}"
    except OSError:
        return f"more than {read - 1:,}"
