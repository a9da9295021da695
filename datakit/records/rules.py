"""datakit's semantic rules (the `x-datakit` keyword): turn order, chosen != rejected, matching lengths, ..."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.records.arrowops import (
    elements_equal,
    enum_codes,
    is_null,
    list_lengths,
    to_bool,
)
from datakit.records.collect import path_key

if TYPE_CHECKING:
    from datakit.records.collect import Collector, Level, Path


def _either(words: list[str]) -> str:
    return " or ".join(words) if words else "nothing"


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeio" else "a ") + word


def check_roles(flat: pa.Array, lengths: np.ndarray, mask: np.ndarray | None, level: Level, path: Path,
                out: Collector, roles: dict[str, Any]) -> None:
    """Turn order in a list of messages: allowed first and last roles and which role may follow which.

    Roles outside the enum (or missing) are left to the enum check, so each mistake is reported once.
    """
    enum: list[str] = roles["enum"]
    k = len(enum)
    role = flat.field(flat.type.get_field_index("role"))
    role_path = path + ("role",)
    codes = enum_codes(role, enum, out.memo, path_key(role_path))
    first_ok = np.append([r in roles.get("first", enum) for r in enum], True)
    last_ok = np.append([r in roles.get("last", enum) for r in enum], True)
    follows = np.ones((k + 1, k + 1), dtype=bool)
    nxt = roles.get("next", {})
    for i, r in enumerate(enum):
        follows[i, :k] = [s in nxt.get(r, []) for s in enum]

    n = len(codes)
    filled = lengths > 0
    firsts = (np.cumsum(lengths) - lengths)[filled]
    lasts = firsts + lengths[filled] - 1

    def report(bad: np.ndarray, message) -> None:
        if mask is not None:
            bad &= mask
        if bad.any():
            out.add(level, bad, role_path, message)

    bad = np.zeros(n, dtype=bool)
    bad[firsts] = ~first_ok[codes[firsts]]
    report(bad, lambda pos: f"the first turn must be {_a(_either(roles.get('first', enum)))} turn, not {enum[codes[pos]]!r}")
    bad = np.zeros(n, dtype=bool)
    bad[lasts] = ~last_ok[codes[lasts]]
    report(bad, lambda pos: f"the last turn must be {_a(_either(roles.get('last', enum)))} turn, not {enum[codes[pos]]!r}")
    if n > 1:
        bad = np.zeros(n, dtype=bool)
        bad[1:] = ~follows[codes[:-1], codes[1:]]
        bad[firsts] = False
        report(bad, lambda pos: (f"{_a(enum[codes[pos]])} turn cannot follow {_a(enum[codes[pos - 1]])} turn "
                                 f"(after {enum[codes[pos - 1]]} comes {_either(nxt.get(enum[codes[pos - 1]], []))})"))


def _field(arr: pa.StructArray, name: str) -> pa.Array | None:
    index = arr.type.get_field_index(name)
    return arr.field(index) if index >= 0 else None


def _valid(arr: pa.Array, mask: np.ndarray | None) -> np.ndarray:
    nulls = is_null(arr)
    valid = np.ones(len(arr), dtype=bool) if nulls is None else ~nulls
    return valid if mask is None else valid & mask


def _is_list(arr: pa.Array) -> bool:
    t = arr.type
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def check_object(arr: pa.StructArray, mask: np.ndarray | None, level: Level, path: Path, out: Collector,
                 rules: dict[str, Any]) -> None:
    """Rules that relate several fields of one object (a row, or a message)."""
    if "requires_any" in rules:
        names = rules["requires_any"]
        present = np.zeros(len(arr), dtype=bool)
        for name in names:
            child = _field(arr, name)
            if child is None:
                continue
            has = _valid(child, None)
            if _is_list(child):
                has &= list_lengths(child) > 0
            present |= has
        bad = ~present if mask is None else mask & ~present
        out.add(level, bad, path, f"needs {_either(names)}")
    for a_name, b_name in rules.get("distinct", ()):
        a, b = _field(arr, a_name), _field(arr, b_name)
        if a is None or b is None:
            continue
        both = _valid(a, mask) & _valid(b, None)
        bad = both & elements_equal(a, b)
        out.add(level, bad, path + (b_name,), f"is identical to {a_name}")
    for a_name, b_name in rules.get("same_length", ()):
        a, b = _field(arr, a_name), _field(arr, b_name)
        if a is None or b is None or not (_is_list(a) and _is_list(b)):
            continue
        la, lb = list_lengths(a), list_lengths(b)
        bad = _valid(a, mask) & _valid(b, None) & (la != lb)
        out.add(level, bad, path + (b_name,), lambda pos, la=la, lb=lb, a_name=a_name:
                f"has {lb[pos]} items but {a_name} has {la[pos]}")
    for a_name, b_name in rules.get("not_less", ()):
        a, b = _field(arr, a_name), _field(arr, b_name)
        if a is None or b is None or pa.types.is_null(a.type) or pa.types.is_null(b.type):
            continue
        try:
            below = to_bool(pc.less(a, b))
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            continue  # the columns' own type checks report what is wrong with them
        bad = below if mask is None else below & mask
        out.add(level, bad, path + (a_name,), lambda pos, a=a, b=b, b_name=b_name:
                f"{a[pos].as_py()} is below {b_name} ({b[pos].as_py()})")
    if "image_parts" in rules:
        _check_image_parts(arr, mask, level, path, out, rules["image_parts"])


def _check_image_parts(arr: pa.StructArray, mask, level, path, out, rule: dict[str, Any]) -> None:
    """The number of image placeholders in the messages equals the number of images."""
    images = _field(arr, rule["images"])
    if images is None or not _is_list(images):
        return
    n = len(arr)
    placeholders = np.zeros(n, dtype=np.int64)
    for name in rule["messages"]:
        col = _field(arr, name)
        if col is None or not _is_list(col):
            return
        messages = col.flatten()
        if not pa.types.is_struct(messages.type) or messages.type.get_field_index("content") < 0:
            return
        content = _field(messages, "content")
        if not _is_list(content):
            return
        parts = content.flatten()
        if not pa.types.is_struct(parts.type) or parts.type.get_field_index("type") < 0:
            return
        owner = np.repeat(np.repeat(np.arange(n), list_lengths(col)), list_lengths(content))
        is_image = to_bool(pc.equal(_field(parts, "type"), "image"))
        placeholders += np.bincount(owner[is_image], minlength=n)
    counts = list_lengths(images)
    bad = _valid(images, mask) & (counts != placeholders)
    out.add(level, bad, path + (rule["images"],), lambda pos: (
        f"holds {counts[pos]} image(s) but {' and '.join(rule['messages'])} "
        f"{'has' if len(rule['messages']) == 1 else 'have'} {placeholders[pos]} image part(s)"))
