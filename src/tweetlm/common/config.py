"""Config helpers (layer L0): nested dataclasses to and from dicts, and ``--set a.b=value`` overrides.

Each layer owns a plain dataclass for its settings; ``jobs.recipes`` composes them into one run config. An
override names a dotted path to a field; its string value is parsed to the field's declared type (``int``,
``float``, ``bool``, ``str``, ``list[str]`` or ``Optional`` of these). An unknown key or an unparsable value is a
``ValueError`` that names the valid keys or the expected type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def to_dict(cfg: Any) -> dict:
    """Nested dict of a (nested) dataclass instance."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict) -> Any:
    """Build dataclass ``cls`` from ``data``, recursing into dataclass-typed fields. Unknown keys are a
    ``ValueError`` (a config written by a newer version is not silently half-read)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}; valid keys: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = from_dict(tp, value)
        kwargs[name] = value
    return cls(**kwargs)


_EXPECTED = {
    int: "a whole number (e.g. 4)",
    float: "a number (e.g. 0.5 or 1e-3)",
    bool: f"one of {'/'.join(sorted(_TRUE))} or {'/'.join(sorted(_FALSE))}",
}


def _parse(value: str, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value.lower() in ("none", "null"):
            return None
        return _parse(value, args[0], key)
    if origin is list:
        (inner,) = typing.get_args(tp) or (str,)
        return [_parse(v.strip(), inner, key) for v in value.split(",") if v.strip()]
    try:
        if tp is bool:
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError
        if tp is int:
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return value
    except ValueError:
        raise ValueError(
            f"--set {key}={value!r}: expected a value of type {tp.__name__}, {_EXPECTED.get(tp, '')}"
        ) from None
    raise ValueError(f"--set {key}: fields of type {tp} cannot be set from the command line")


def apply_override(cfg: Any, assignment: str) -> None:
    """Apply one ``"a.b=value"`` override to the nested dataclass ``cfg`` in place.

    Raises ``ValueError`` for a missing ``=``, an unknown key (the message lists the valid keys at that level)
    or a value that does not parse to the field's type.
    """
    if "=" not in assignment:
        raise ValueError(f"--set expects key=value, got {assignment!r}")
    key, value = assignment.split("=", 1)
    key = key.strip()
    obj = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(obj):
            raise ValueError(f"--set {key}: {'.'.join(parts[:i])} is not a config section")
        names = [f.name for f in dataclasses.fields(obj)]
        if part not in names:
            prefix = ".".join(parts[:i])
            valid = ", ".join(f"{prefix + '.' if prefix else ''}{n}" for n in names)
            raise ValueError(f"--set {key}: unknown key {part!r}; valid keys here: {valid}")
        if i < len(parts) - 1:
            obj = getattr(obj, part)
    tp = typing.get_type_hints(type(obj))[parts[-1]]
    if dataclasses.is_dataclass(tp):
        raise ValueError(f"--set {key}: is a section, set one of its fields (e.g. {key}.<field>=...)")
    setattr(obj, parts[-1], _parse(value.strip(), tp, key))


def apply_overrides(cfg: Any, assignments: list[str]) -> Any:
    """Apply every override in order; returns ``cfg`` for chaining."""
    for a in assignments:
        apply_override(cfg, a)
    return cfg
