"""Pinpointing JSON type conflicts between rows, for the error path of the JSON readers."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from datakit.records.arrow_types import arrow_kind


def json_kind(value: Any) -> str:
    """The JSON type name of a parsed value: object, array, string, number, boolean or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return "array"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class KindTracker:
    """Remembers the JSON type first seen at each field path and reports the first row that differs.

    Paths look like `label`, `metadata.score` or `prompt[].content` (`[]` stands for any list item).
    Null fits every type, and integers and floats are both `number`, as in Arrow's inference.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, int | None]] = {}

    def seed_from_schema(self, schema: pa.Schema) -> None:
        """Record the types of columns already read (rows before this point, row unknown)."""
        for schema_field in schema:
            self._seed_type(schema_field.name, schema_field.type)

    def _seed_type(self, path: str, arrow_type: pa.DataType) -> None:
        kind = _arrow_kind(arrow_type)
        if kind is None:
            return
        self._seen.setdefault(path, (kind, None))
        if kind == "object":
            for child in arrow_type:
                self._seed_type(_join(path, child.name), child.type)
        elif kind == "array":
            self._seed_type(path + "[]", arrow_type.value_type)

    def conflicts_with_schema(self, schema: pa.Schema) -> bool:
        """Whether a later schema gives some already-seen path a different JSON type."""
        probe = KindTracker()
        probe.seed_from_schema(schema)
        return any(
            path in self._seen and self._seen[path][0] != kind for path, (kind, _) in probe._seen.items()
        )

    def check(self, row_value: dict, row: int) -> tuple[str, str, str, int | None] | None:
        """Record a row's types; return (field, found, expected, row first seen) on a conflict."""
        return self._walk(row_value, "", row)

    def _walk(self, value: Any, path: str, row: int) -> tuple[str, str, str, int | None] | None:
        kind = json_kind(value)
        if kind == "null":
            return None
        if path:
            seen = self._seen.get(path)
            if seen is None:
                self._seen[path] = (kind, row)
            elif seen[0] != kind:
                return path, kind, seen[0], seen[1]
        if kind == "object":
            for key, item in value.items():
                found = self._walk(item, _join(path, key), row)
                if found:
                    return found
        elif kind == "array":
            for item in value:
                found = self._walk(item, path + "[]", row)
                if found:
                    return found
        return None


def conflict_message(found: str, expected: str, first_row: int | None, row: int) -> str:
    """Message for a type conflict found by KindTracker."""
    where = "earlier values in this row have" if first_row == row else "earlier rows have"
    return f"found {found} where {where} {expected}"


# JSON kinds as this module names them: every number is a "number", and other scalar types (binary, the
# timestamps Arrow infers from date-like strings) came from strings.
_AS_JSON_KIND = {"integer": "number", "null": None, "binary": "string", "other": "string"}


def _arrow_kind(arrow_type: pa.DataType) -> str | None:
    kind = arrow_kind(arrow_type)
    return _AS_JSON_KIND.get(kind, kind)
