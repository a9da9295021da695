"""Checks compiled from a schema node for one Arrow type, run column-wise over whole arrays.

A plan is bound once per (schema node, Arrow type) and then run on every batch. Nested lists are
flattened, so every check sees one flat array per level; positions map back to rows (and to the
list indices of a field path) only for the few errors that get reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.errors import SchemaError
from datakit.records import rules
from datakit.records.arrow_types import (
    arrow_kind,
    describe,
    expected,
    json_types,
    matching_type,
)
from datakit.records.arrowops import (
    enum_codes,
    is_null,
    list_lengths,
    non_blank,
    to_bool,
)
from datakit.records.collect import (
    Collector,
    Level,
    Path,
    Predicate,
    bind_path,
    path_key,
    show,
)

NON_BLANK_PATTERNS = frozenset({r"\S", r"[^\s]"})


def _and(mask: np.ndarray | None, bad: np.ndarray) -> np.ndarray:
    return bad if mask is None else bad & mask


@dataclass
class Plan:
    """Checks for one node against one Arrow type; subclasses add the checks of their JSON type."""

    nullable: bool
    null_message: str = "is missing"

    def run(self, arr: pa.Array, mask: np.ndarray | None, level: Level, path: Path, out: Collector) -> None:
        nulls = is_null(arr)
        if nulls is not None:
            if not self.nullable:
                out.add(level, _and(mask, nulls), path, self.null_message)
            mask = ~nulls if mask is None else mask & ~nulls
            if not mask.any():
                return
        self.check(arr, mask, level, path, out)

    def check(self, arr: pa.Array, mask: np.ndarray | None, level: Level, path: Path, out: Collector) -> None:
        """Checks on the non-null positions selected by `mask` (None: all)."""


@dataclass
class ScalarPlan(Plan):
    """Strings, numbers and booleans: enum, pattern, length, range and finiteness."""

    checks: list[Callable[..., tuple[np.ndarray, Callable[[pa.Array, int], str]]]] = field(default_factory=list)

    def check(self, arr, mask, level, path, out) -> None:
        key = path_key(path)
        for check in self.checks:
            bad, explain = check(arr, out.memo, key)
            bad = _and(mask, bad)
            if bad.any():
                out.add(level, bad, path, lambda pos, arr=arr, explain=explain: explain(arr, pos))


@dataclass
class ListPlan(Plan):
    """Lists: item count bounds, the item plan over the flattened items, and list rules (roles)."""

    min_items: int | None = None
    max_items: int | None = None
    items: Plan | None = None
    roles: dict[str, Any] | None = None

    def check(self, arr, mask, level, path, out) -> None:
        lengths = list_lengths(arr)
        if self.min_items is not None:
            bad = _and(mask, lengths < self.min_items)
            if bad.any():
                n = self.min_items
                out.add(level, bad, path, "is empty" if n == 1 else f"needs at least {n} items")
        if self.max_items is not None:
            bad = _and(mask, lengths > self.max_items)
            if bad.any():
                out.add(level, bad, path, lambda pos: f"has {lengths[pos]} items, more than {self.max_items}")
        if self.items is None and self.roles is None:
            return
        flat = arr.flatten()
        child_level = Level(level, arr)
        child_mask = None if mask is None else np.repeat(mask, lengths)
        child_path = path + (child_level,)
        if self.items is not None:
            self.items.run(flat, child_mask, child_level, child_path, out)
        if self.roles is not None:
            rules.check_roles(flat, lengths, child_mask, child_level, child_path, out, self.roles)


@dataclass
class StructPlan(Plan):
    """Objects: each declared property's plan, object rules, and if/then/else."""

    properties: list[tuple[str, int, Plan]] = field(default_factory=list)
    rules: dict[str, Any] = field(default_factory=dict)
    condition: StructPlan | None = None
    then: StructPlan | None = None
    otherwise: StructPlan | None = None

    def check(self, arr, mask, level, path, out) -> None:
        if not pa.types.is_struct(arr.type):
            return  # an open object stored as a map: nothing declared to check
        for name, index, plan in self.properties:
            plan.run(arr.field(index), mask, level, path + (name,), out)
        if self.rules:
            rules.check_object(arr, mask, level, path, out, self.rules)
        if self.condition is not None:
            holds = Predicate(len(arr))
            self.condition.check(arr, mask, level, path, holds)
            ok = ~holds.failed
            if self.then is not None:
                self.then.check(arr, ok if mask is None else mask & ok, level, path, out)
            if self.otherwise is not None:
                no = holds.failed if mask is None else mask & holds.failed
                self.otherwise.check(arr, no, level, path, out)


# ---------------------------------------------------------------- scalar checks


def _enum_check(values: list[Any]):
    allowed = ", ".join(str(v) for v in values)
    usable = [v for v in values if v is not None]

    def check(arr: pa.Array, memo: dict, key: tuple[Any, ...]):
        absent = enum_codes(arr, usable, memo, key) == len(usable)
        return absent, lambda a, pos: f"{show(a[pos].as_py())} is not one of: {allowed}"

    return check


def _non_blank_check(arr: pa.Array, memo: dict, key: tuple[Any, ...]):
    return ~non_blank(arr), lambda a, pos: ("is empty" if a[pos].as_py() == "" else "is blank (whitespace only)")


def _pattern_check(pattern: str):
    """`pattern` as an unanchored search, run by Arrow's RE2 engine (ECMA and RE2 agree on common patterns;
    lookarounds and backreferences are not supported). `\\S`, the usual non-blank rule, has its own fast path."""
    try:
        re.compile(pattern)
    except re.error as e:
        raise SchemaError(f"invalid pattern {pattern!r}: {e}") from None

    def check(arr: pa.Array, memo: dict, key: tuple[Any, ...]):
        return ~to_bool(pc.match_substring_regex(arr, pattern)), lambda a, pos: f"{show(a[pos].as_py())} does not match {pattern!r}"

    return check


def _length_check(low: int | None, high: int | None):
    def check(arr: pa.Array, memo: dict, key: tuple[Any, ...]):
        n = pc.utf8_length(arr).fill_null(0).to_numpy(zero_copy_only=False)
        bad = np.zeros(len(arr), dtype=bool)
        if low is not None:
            bad |= n < low
        if high is not None:
            bad |= n > high
        bounds = f"{low if low is not None else 0}..{high if high is not None else 'any'}"
        return bad, lambda a, pos: f"has {n[pos]} characters, outside {bounds}"

    return check


def _range_check(node: dict[str, Any]):
    limits = [(k, node[k]) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in node]
    words = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    ops = {"minimum": pc.greater_equal, "maximum": pc.less_equal, "exclusiveMinimum": pc.greater, "exclusiveMaximum": pc.less}

    def check(arr: pa.Array, memo: dict, key: tuple[Any, ...]):
        ok = np.ones(len(arr), dtype=bool)
        for key, value in limits:
            ok &= to_bool(ops[key](arr, value), null_as=True)
        rule = " and ".join(f"{words[k]} {v}" for k, v in limits)
        return ~ok, lambda a, pos: f"{a[pos].as_py()} is not {rule}"

    return check


def _finite_check(arr: pa.Array, memo: dict, key: tuple[Any, ...]):
    return ~to_bool(pc.is_finite(arr), null_as=True), lambda a, pos: f"{a[pos].as_py()} is not a finite number"


# ---------------------------------------------------------------- binding


class Binder:
    """Compiles schema nodes against Arrow types, collecting structural problems (a column of the wrong type)."""

    def __init__(self, resolve: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.resolve = resolve
        self.problems: list[tuple[str, str]] = []  # (field path, message), not tied to a row

    def bind(self, node: Any, t: pa.DataType, where: tuple[str, ...], nullable: bool, null_message: str) -> Plan | None:
        if node is True or node == {}:
            return None
        if node is False:
            self.problems.append((bind_path(where), "is not allowed"))
            return None
        node = self.resolve(node)
        for key in ("oneOf", "anyOf"):
            if key in node:
                for branch in node[key]:
                    resolved = self.resolve(branch)
                    if matching_type(resolved, t) is not None:
                        return self.bind(resolved, t, where, nullable, null_message)
                self.problems.append((bind_path(where), f"no alternative accepts {describe(t)}"))
                return None
        if "null" in json_types(node):
            nullable = True
        kind = matching_type(node, t)
        if kind is None:
            self.problems.append((bind_path(where), f"expected {expected(node)}, found {describe(t)}"))
            return None
        if kind == "null":
            return Plan(nullable=nullable, null_message=null_message)
        if kind == "array":
            return self._bind_list(node, t, where, nullable, null_message)
        if kind == "object":
            return self.bind_object(node, t, where, nullable, null_message)
        return self._bind_scalar(node, t, kind, nullable, null_message)

    def _bind_scalar(self, node, t, kind, nullable, null_message) -> Plan:
        checks = []
        values = node.get("enum", [node["const"]] if "const" in node else None)
        if values is not None:
            checks.append(_enum_check(values))
        if kind == "string":
            pattern = node.get("pattern")
            if pattern in NON_BLANK_PATTERNS:
                checks.append(_non_blank_check)
            elif pattern is not None:
                checks.append(_pattern_check(pattern))
            if "minLength" in node or "maxLength" in node:
                checks.append(_length_check(node.get("minLength"), node.get("maxLength")))
        if kind in ("integer", "number"):
            if pa.types.is_floating(t):
                checks.append(_finite_check)
            if any(k in node for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
                checks.append(_range_check(node))
        return ScalarPlan(nullable=nullable, null_message=null_message, checks=checks)

    def _bind_list(self, node, t, where, nullable, null_message) -> ListPlan:
        items = node.get("items")
        item_plan = None
        if items is not None:
            item_plan = self.bind(items, t.value_type, where + ("[]",), nullable=False, null_message="is null")
        roles = node.get("x-datakit", {}).get("roles")
        if roles is not None:
            roles = self._bind_roles(roles, items, t.value_type, where)
        return ListPlan(
            nullable=nullable, null_message=null_message, min_items=node.get("minItems"), max_items=node.get("maxItems"),
            items=item_plan, roles=roles,
        )

    def _bind_roles(self, roles: dict[str, Any], items: Any, t: pa.DataType, where) -> dict[str, Any] | None:
        item = self.resolve(items) if isinstance(items, dict) else {}
        role_node = self.resolve(item.get("properties", {}).get("role", {}))
        enum = role_node.get("enum")
        if not enum:
            raise SchemaError(f"{bind_path(where)}: the roles rule needs items with a `role` enum")
        if not pa.types.is_struct(t) or t.get_field_index("role") < 0 or arrow_kind(t.field("role").type) != "string":
            return None  # the structural problem is already reported by the item plan
        return {**roles, "enum": list(enum)}

    def bind_object(self, node, t, where, nullable, null_message) -> StructPlan:
        plan = StructPlan(nullable=nullable, null_message=null_message, rules=dict(node.get("x-datakit", {})))
        plan.rules.pop("trainers", None)
        if not pa.types.is_struct(t):
            return plan
        self._bind_properties(plan, node, t, where)
        if "if" in node:
            plan.condition = self._bind_branch(node["if"], t, where)
            plan.then = self._bind_branch(node.get("then", True), t, where)
            plan.otherwise = self._bind_branch(node.get("else", True), t, where)
        return plan

    def _bind_properties(self, plan: StructPlan, node, t, where) -> None:
        required = set(node.get("required", ()))
        props = node.get("properties", {})
        top = not where
        for name in sorted(required - set(props)):
            if t.get_field_index(name) < 0:
                self.problems.append((bind_path(where + (name,)), "missing column" if top else "missing field"))
        for name, sub in props.items():
            index = t.get_field_index(name)
            if index < 0:
                if name in required:
                    self.problems.append((bind_path(where + (name,)), "missing column" if top else "missing field"))
                continue
            child = self.bind(sub, t.field(index).type, where + (name,), nullable=name not in required,
                              null_message="is missing")
            if child is not None:
                plan.properties.append((name, index, child))
        if node.get("additionalProperties", True) is False:
            for f in t:
                if f.name not in props:
                    self.problems.append((bind_path(where + (f.name,)), "is not allowed here"))

    def _bind_branch(self, node: Any, t: pa.DataType, where) -> StructPlan | None:
        if node is True:
            return None
        node = self.resolve(node)
        plan = StructPlan(nullable=True, rules=dict(node.get("x-datakit", {})))
        self._bind_properties(plan, node, t, where)
        return plan
