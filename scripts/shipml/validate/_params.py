"""Parameters of deepchecks checks and conditions, checked against their signatures before a run.

deepchecks' checks take ``**kwargs`` and drop what they do not know, so ``n_sampels: 100`` would
be ignored without a word, and a value of the wrong type (``scorers: 5``) only fails deep inside
the run, where it looks like a check that crashed. Here each name is looked up in the signature
of the check's ``__init__`` (or the condition method) and each value is compared with the
parameter's annotation, as far as a YAML value can match it; an annotation this module cannot
read accepts any value (the run-time check in :mod:`shipml.validate._deepchecks` stays).
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from shipml.errors import ConfigError, did_you_mean

UNKNOWN_PARAMETER = "{where}: {owner} has no parameter {name!r}{hint} (valid: {valid})"
WRONG_TYPE = "{where}: {owner} takes {expected} for {name}, not {value!r} ({kind})"

_SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Iterable,
              collections.abc.Collection)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def parameters(function: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    """Return the named keyword parameters of ``function`` (no ``self``, no ``*args``/``**kw``),
    with annotations evaluated where they can be."""
    # A bound method is a new object on every access: read (and cache) its function.
    return _parameters(getattr(function, "__func__", function))


@functools.lru_cache(maxsize=512)
def _parameters(function: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    try:
        signature = inspect.signature(function, eval_str=True)
    except Exception:  # an annotation that does not evaluate: names are still known
        signature = inspect.signature(function)
    return {
        name: parameter for name, parameter in signature.parameters.items()
        if name != "self" and parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                 inspect.Parameter.KEYWORD_ONLY)
    }


def check_parameters(params: Mapping[str, Any], function: Callable[..., Any], owner: str,
                     where: Callable[[str], str]) -> None:
    """Raise ConfigError unless every key of ``params`` is a parameter of ``function`` and its
    value can be of the parameter's annotated type.

    ``owner`` names the check or condition in messages; ``where(name)`` returns the pointer to
    the key ``name`` (``shipml.yaml:12 validate.checks[0].params.n_samples``).
    """
    known = parameters(function)
    for name, value in params.items():
        parameter = known.get(str(name))
        if parameter is None:
            valid = sorted(known)
            hint = did_you_mean(str(name), valid, cutoff=0.6)
            raise ConfigError(UNKNOWN_PARAMETER.format(
                where=where(str(name)), owner=owner, name=name, hint=hint,
                valid=", ".join(valid) or "none"))
        if value is None and parameter.default is None:
            continue  # deepchecks writes `x: int = None` for optional parameters
        if not fits(parameter.annotation, value):
            raise ConfigError(WRONG_TYPE.format(
                where=where(str(name)), owner=owner, expected=describe(parameter.annotation),
                name=name, value=value, kind=_kind(value)))


def fits(hint: Any, value: Any) -> bool:
    """Return False when ``value`` (from YAML) cannot be of type ``hint``; True when it can or
    when ``hint`` is not a type this function reads."""
    if hint is inspect.Parameter.empty or hint is Any or isinstance(hint, (str, typing.TypeVar)):
        return True
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(fits(argument, value) for argument in arguments)
    if origin is typing.Literal:
        return value in arguments
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    base = origin or hint
    if base in _MAPPINGS:
        if not isinstance(value, dict):
            return False
        if len(arguments) == 2:
            return all(fits(arguments[0], key) and fits(arguments[1], item)
                       for key, item in value.items())
        return True
    if base in _SEQUENCES:
        if not isinstance(value, list):
            return False
        if len(arguments) == 1:
            return all(fits(arguments[0], item) for item in value)
        return True
    if base is collections.abc.Callable:
        return False  # YAML holds no functions; a union that also takes a name says so
    return True


def describe(hint: Any) -> str:
    """Return ``hint`` in words: "an integer", "a list of strings or a mapping", …"""
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        words = [describe(argument) for argument in arguments if argument is not type(None)]
        return " or ".join(dict.fromkeys(words))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(argument) for argument in arguments)
    named = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             type(None): "null"}
    if hint in named:
        return named[hint]
    base = origin or hint
    if base in _MAPPINGS:
        return "a mapping"
    if base in _SEQUENCES:
        if len(arguments) == 1:
            return f"a list of {_plural(describe(arguments[0]))}"
        return "a list"
    if base is collections.abc.Callable:
        return "a function"
    return getattr(hint, "__name__", str(hint))


def _plural(words: str) -> str:
    return {"an integer": "integers", "a number": "numbers", "a string": "strings",
            "true or false": "booleans"}.get(words, words)


def _kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)
