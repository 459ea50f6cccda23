"""Configuration as data: YAML files checked against the JSON Schemas in ``schemas/``, ``--set key=value``
overrides, and typed option dataclasses built from plain mappings.

Every error names where the value came from (the file, or ``--set``) and the key, dotted (``options.fps``),
so a user can find it; an unknown key lists the known ones.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import yaml

from wamdata.format.schema import SchemaError, schema_file

T = TypeVar("T")


class _ConfigLoader(yaml.SafeLoader):
    """YAML as version 1.2 reads ``16:9``: as text. Version 1.1, which PyYAML follows, reads digits joined by
    colons as a base-60 number (``16:9`` -> 969), which no configuration means (an aspect ratio, a time)."""


_ConfigLoader.yaml_implicit_resolvers = {first: list(resolvers)
                                         for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in "+-0123456789":
    _ConfigLoader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:str", re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")))


def read_yaml(text: str) -> Any:
    """A YAML document as plain values (safe: no Python objects), ``16:9`` as text."""
    return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader: builds no Python objects


class ConfigError(SchemaError):
    """A configuration value that is missing, unknown or of the wrong type; the message names its origin and key."""


def load_yaml(path: str | Path, schema_name: str) -> dict[str, Any]:
    """A YAML document validated against ``schemas/v1/<schema_name>``."""
    path = Path(path)
    try:
        doc = read_yaml(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    check_against_schema(doc, schema_name, str(path))
    return doc


def check_against_schema(doc: Any, schema_name: str, where: str) -> None:
    validator = jsonschema.Draft202012Validator(schema_file(schema_name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path) or "<root>"
        raise ConfigError(f"{where}: {key}: {error.message}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value), the value read as YAML (``30`` is a number, ``[a, b]`` a list,
    ``{pix_fmt: yuv444p}`` a mapping, ``null`` None)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text}: expected key=value")
    try:
        value = read_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text}: the value is not valid YAML: {e}") from None
    return key.strip().split("."), value


def with_overrides(doc: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``doc`` with each ``key.path=value`` set, creating mappings on the way."""
    out: dict[str, Any] = copy.deepcopy(dict(doc))
    for text in overrides:
        path, value = parse_override(text)
        target = out
        for i, part in enumerate(path[:-1]):
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text}: {'.'.join(path[:i + 1])} is {child!r}, not a mapping")
            target = child
        target[path[-1]] = value
    return out


def typed(cls: type[T], values: Mapping[str, Any], where: str, what: str = "option") -> T:
    """An instance of the dataclass ``cls`` from ``values``, every key known and every value of its field's
    type (an int is accepted for a float, a list for a tuple); otherwise ConfigError naming the key."""
    names = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = [key for key in values if key not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(names), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: unknown {what} {key!r}{hint}; known {what}s: {', '.join(sorted(names))}")
    converted = {key: _convert(value, hints[key], f"{where}: {what} {key!r}") for key, value in values.items()}
    try:
        return cls(**converted)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the type ``hint`` (and lists turned into tuples where a tuple is wanted)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is none of {_name(hint)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: must be a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], where) for v in value)
        if origin is tuple and args:
            if len(value) != len(args):
                raise ConfigError(f"{where}: must be a list of {len(args)} values, got {value!r}")
            return tuple(_convert(v, a, where) for v, a in zip(value, args, strict=True))
        return [_convert(v, args[0], where) for v in value] if args else list(value)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: must be a mapping, got {value!r}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: must be a whole number, got {value!r}")
        return value
    if hint in (str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where}: must be {'text' if hint is str else 'true or false'}, got {value!r}")
    return value


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
