"""Step parameters: typed dataclasses whose fields carry their help text, checked against recipe values."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

_MISSING = dataclasses.MISSING


def did_you_mean(word: Any, options: Any) -> str:
    """' (did you mean 'x'?)' for the closest of `options` to a misspelt `word`, or ''."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def param(default: Any = _MISSING, *, help: str, default_factory: Any = _MISSING) -> Any:  # noqa: A002
    """A documented step parameter; `help` is shown by `datakit steps` and in error messages."""
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class ParamInfo:
    """One parameter as `datakit steps` shows it."""

    name: str
    type: str
    required: bool
    default: Any
    help: str


def describe(params_cls: type) -> list[ParamInfo]:
    """The parameters of a Params dataclass, in declaration order."""
    hints = typing.get_type_hints(params_cls)
    result = []
    for f in dataclasses.fields(params_cls):
        required = f.default is _MISSING and f.default_factory is _MISSING
        default = None if required else (f.default if f.default is not _MISSING else f.default_factory())
        result.append(ParamInfo(f.name, type_name(hints[f.name]), required, default, f.metadata.get("help", "")))
    return result


def type_name(tp: Any) -> str:
    """A short, user-facing name for a parameter type, e.g. 'list of text' or 'number or null'."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of text to {type_name(args[1])}" if args else "mapping"
    if dataclasses.is_dataclass(tp):
        return f"{tp.__name__} mapping"
    return {str: "text", int: "integer", float: "number", bool: "true/false", Any: "any value"}.get(tp, str(tp))


class ParamError(Exception):
    """A parameter value that does not fit; `key` is the offending parameter (dotted for nested values)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key


def _check(value: Any, tp: Any, key: str) -> Any:
    """Return `value` converted to `tp` (ints widen to floats, tuples to lists) or raise ParamError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise ParamError(f"expected null, got {_kind(value)}", key)
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return _check(value, option, key)
            except ParamError:
                continue
        raise ParamError(f"expected {type_name(tp)}, got {_kind(value)}", key)
    if origin is Literal:
        if value in args and all(type(value) is type(a) for a in args if a == value):
            return value
        raise ParamError(f"expected {type_name(tp)}, got {value!r}", key)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ParamError(f"expected {type_name(tp)}, got {_kind(value)}", key)
        item = args[0] if args else Any
        return [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamError(f"expected {type_name(tp)}, got {_kind(value)}", key)
        value_type = args[1] if args else Any
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ParamError(f"keys must be text, got {_kind(k)}", key)
            out[k] = _check(v, value_type, f"{key}.{k}")
        return out
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ParamError(f"expected a mapping ({tp.__name__}), got {_kind(value)}", key)
        try:
            return build_params(tp, value)
        except ParamError as exc:
            raise ParamError(exc.message, f"{key}.{exc.key}" if exc.key else key) from None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ParamError(f"expected {type_name(tp)}, got {_kind(value)}", key)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"true/false ({value})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text ({value!r})" if len(value) < 40 else "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def build_params(params_cls: type, values: dict[str, Any]) -> Any:
    """Check `values` against the Params dataclass and construct it.

    Raises ParamError naming the key: unknown keys (with a suggestion), missing required ones,
    values of the wrong type, and whatever the dataclass's own `__post_init__` rejects (ValueError).
    """
    hints = typing.get_type_hints(params_cls)
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    for key in values:
        if key not in fields:
            hint = did_you_mean(key, fields)
            known = ", ".join(fields) or "none"
            raise ParamError(f"unknown parameter '{key}'{hint}; known parameters: {known}", str(key))
    checked = {}
    for name, f in fields.items():
        if name in values:
            checked[name] = _check(values[name], hints[name], name)
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ParamError(f"missing required parameter '{name}' ({f.metadata.get('help', '')})", name)
    try:
        return params_cls(**checked)
    except ValueError as exc:
        key = getattr(exc, "key", None)
        first_word = str(exc).split(" ", 1)[0]
        if key is None and first_word in fields:  # "fraction must be ..." is about `fraction`
            key = first_word
        raise ParamError(str(exc), key) from None


def as_dict(params: Any) -> dict[str, Any]:
    """The parameter values as plain data (for fingerprints and the run record)."""
    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else {}
