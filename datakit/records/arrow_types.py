"""JSON Schema types <-> Arrow types: which Arrow columns a schema node accepts, and the canonical Arrow type it derives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

Resolve = Callable[[dict[str, Any]], dict[str, Any]]

JSON_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")


def json_types(node: dict[str, Any]) -> tuple[str, ...]:
    """The JSON types a node allows: its `type` keyword, or what its other keywords imply."""
    declared = node.get("type")
    if isinstance(declared, str):
        return (declared,)
    if isinstance(declared, list):
        return tuple(declared)
    implied = []
    if "properties" in node or "required" in node:
        implied.append("object")
    if "items" in node or "minItems" in node or "maxItems" in node:
        implied.append("array")
    if "pattern" in node or "minLength" in node or "maxLength" in node:
        implied.append("string")
    values = node.get("enum", [node["const"]] if "const" in node else [])
    for v in values:
        t = _json_type_of(v)
        if t not in implied:
            implied.append(t)
    return tuple(implied) or JSON_TYPES


def _json_type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def arrow_kind(t: pa.DataType) -> str:
    """The JSON-like kind of an Arrow type: string, binary, integer, number, boolean, array, object, null or other."""
    if pa.types.is_dictionary(t):
        return arrow_kind(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_list_view(t) \
            or pa.types.is_large_list_view(t):
        return "array"
    if pa.types.is_struct(t) or pa.types.is_map(t):
        return "object"
    if pa.types.is_null(t):
        return "null"
    return "other"


def matching_type(node: dict[str, Any], t: pa.DataType) -> str | None:
    """The JSON type of `node` that Arrow type `t` stores, or None when the column cannot hold such values."""
    allowed = json_types(node)
    kind = arrow_kind(t)
    if kind == "null":
        return "null"
    if kind in allowed:
        return kind
    if kind == "integer" and "number" in allowed:
        return "number"
    if kind == "binary" and "string" in allowed and node.get("contentEncoding") == "base64":
        return "binary"
    if kind == "string" and "object" in allowed and not node.get("properties"):
        return "string"  # an object of any shape, stored as JSON text (how datakit derives it)
    return None


def describe(t: pa.DataType) -> str:
    """A short human name for an Arrow type, for error messages."""
    kind = arrow_kind(t)
    if kind == "array":
        return f"list of {describe(t.value_type)}"
    if kind == "object" and pa.types.is_struct(t):
        return "struct{" + ", ".join(f.name for f in t) + "}"
    return str(t)


def expected(node: dict[str, Any]) -> str:
    types = [x for x in json_types(node) if x != "null"]
    return " or ".join(types) if types else "null"


def plain_type(t: pa.DataType) -> pa.DataType:
    """`t` with dictionary, view and fixed-size encodings replaced by the plain layout the checks read."""
    if pa.types.is_dictionary(t):
        return plain_type(t.value_type)
    if pa.types.is_string_view(t):
        return pa.large_string()
    if pa.types.is_binary_view(t):
        return pa.large_binary()
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_list_view(t):
        return pa.list_(t.value_field.with_type(plain_type(t.value_type)))
    if pa.types.is_large_list(t) or pa.types.is_large_list_view(t):
        return pa.large_list(t.value_field.with_type(plain_type(t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(plain_type(f.type)) for f in t])
    return t


def derive_arrow_type(node: dict[str, Any], resolve: Resolve) -> pa.DataType:
    """The canonical Arrow type for a schema node (what datakit writes for it)."""
    node = resolve(node)
    for branch_key in ("oneOf", "anyOf"):
        if branch_key in node:
            return derive_arrow_type(node[branch_key][0], resolve)
    types = [x for x in json_types(node) if x != "null"] or ["null"]
    first = types[0]
    if first == "string":
        return pa.binary() if node.get("contentEncoding") == "base64" else pa.string()
    if first == "integer":
        return pa.int64()
    if first == "number":
        return pa.float64()
    if first == "boolean":
        return pa.bool_()
    if first == "null":
        return pa.null()
    if first == "array":
        items = node.get("items", {})
        return pa.list_(derive_arrow_type(items, resolve) if items else pa.string())
    props = node.get("properties", {})
    if not props:
        # An object of any shape has no fixed Arrow type: datakit stores it as JSON text.
        return pa.string()
    return pa.struct(derive_fields(node, resolve))


def derive_fields(node: dict[str, Any], resolve: Resolve) -> list[pa.Field]:
    """Arrow fields for an object node's properties; required non-null properties are not nullable."""
    required = set(node.get("required", ()))
    fields = []
    for name, sub in node.get("properties", {}).items():
        resolved = resolve(sub)
        nullable = name not in required or "null" in json_types(resolved)
        fields.append(pa.field(name, derive_arrow_type(resolved, resolve), nullable=nullable))
    return fields
