"""The record-kind registry: loads the JSON Schema documents in `schemas/` and splits them into styles."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datakit.errors import SchemaError

SCHEMA_SUFFIX = ".schema.json"

# Keywords that only describe; the validator ignores them.
ANNOTATION_KEYWORDS = frozenset({
    "$schema", "$id", "$comment", "$defs", "definitions", "title", "description", "examples", "default",
    "format", "contentEncoding", "contentMediaType", "deprecated", "readOnly", "writeOnly", "x-datakit",
})
# Keywords the vectorized validator checks. Anything else in a schema is refused at load time, so a
# schema never promises a check that does not run.
CHECKED_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const",
    "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "$ref", "oneOf", "anyOf", "if", "then", "else",
})
# Semantic rules datakit adds under the `x-datakit` keyword, by the kind of node they sit on.
RULES = {
    "array": frozenset({"roles"}),
    "object": frozenset({"requires_any", "distinct", "same_length", "not_less", "image_parts", "trainers"}),
}


def schema_dir() -> Path:
    """Where the bundled schemas live: inside the installed wheel, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_schemas"
    return packaged if packaged.is_dir() else here.parent / "schemas"


@dataclass(frozen=True)
class Style:
    """One shape of a record kind, e.g. the conversational or the standard form of `preference`."""

    name: str
    description: str
    node: dict[str, Any] = field(repr=False)
    required: tuple[str, ...]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class RecordSchema:
    """A record kind: its JSON Schema document and the styles (top-level `oneOf` branches) it allows."""

    name: str
    title: str
    description: str
    document: dict[str, Any] = field(repr=False)
    styles: tuple[Style, ...]
    source: str

    def style(self, name: str) -> Style:
        """The style called `name`; SchemaError listing the others when there is none."""
        for style in self.styles:
            if style.name == name:
                return style
        raise SchemaError(f"schema '{self.name}' has no style '{name}' (styles: {', '.join(s.name for s in self.styles)})")

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Follow a local `$ref` (`#/$defs/...`) to the node it names."""
        return resolve_ref(self.document, node, self.source)

    @property
    def trainers(self) -> tuple[str, ...]:
        return tuple(self.document.get("x-datakit", {}).get("trainers", ()))


def resolve_ref(document: dict[str, Any], node: dict[str, Any], source: str) -> dict[str, Any]:
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(f"only local references ('#/...') are supported, found $ref {ref!r}", path=source)
        target: Any = document
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise SchemaError(f"$ref {ref!r} points to nothing", path=source)
            target = target[part]
        extra = set(node) - {"$ref"} - ANNOTATION_KEYWORDS
        if extra:
            raise SchemaError(f"keywords beside $ref are not supported: {', '.join(sorted(extra))}", path=source)
        node = target
        seen += 1
        if seen > 64:
            raise SchemaError(f"$ref {ref!r} loops", path=source)
    return node


def _check_node(document: dict[str, Any], node: Any, where: str, source: str) -> None:
    """Refuse keywords the validator does not check, recursively, so no rule is silently ignored."""
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise SchemaError(f"{where}: a schema must be an object, found {type(node).__name__}", path=source)
    unknown = set(node) - ANNOTATION_KEYWORDS - CHECKED_KEYWORDS
    if unknown:
        raise SchemaError(
            f"{where}: datakit cannot check {', '.join(sorted(unknown))} (supported: {', '.join(sorted(CHECKED_KEYWORDS))})",
            path=source,
        )
    rules = node.get("x-datakit", {})
    allowed = RULES["array"] | RULES["object"]
    bad_rules = set(rules) - allowed
    if bad_rules:
        raise SchemaError(f"{where}: unknown x-datakit rule(s) {', '.join(sorted(bad_rules))}", path=source)
    for key in ("items", "if", "then", "else"):
        if key in node:
            _check_node(document, node[key], f"{where}.{key}", source)
    for name, sub in node.get("properties", {}).items():
        _check_node(document, sub, f"{where}.properties.{name}", source)
    for key in ("oneOf", "anyOf"):
        for i, sub in enumerate(node.get(key, [])):
            _check_node(document, sub, f"{where}.{key}[{i}]", source)
    add = node.get("additionalProperties", True)
    if not isinstance(add, bool):
        raise SchemaError(f"{where}: additionalProperties must be true or false", path=source)


def _styles(document: dict[str, Any], source: str) -> tuple[Style, ...]:
    branches = document.get("oneOf") or document.get("anyOf")
    nodes = branches if branches else [document]
    styles = []
    for i, branch in enumerate(nodes):
        node = resolve_ref(document, branch, source)
        name = node.get("title", f"style{i}") if branches else "default"
        props = tuple(node.get("properties", {}))
        styles.append(Style(name, node.get("description", ""), node, tuple(node.get("required", ())), props))
    return tuple(styles)


def _from_document(document: Any, name: str, source: str) -> RecordSchema:
    if not isinstance(document, dict):
        raise SchemaError("a schema document must be a JSON object", path=source)
    for defs_key in ("$defs", "definitions"):
        for def_name, sub in document.get(defs_key, {}).items():
            _check_node(document, sub, f"{defs_key}.{def_name}", source)
    _check_node(document, {k: v for k, v in document.items() if k not in ("$defs", "definitions")}, "(root)", source)
    return RecordSchema(
        name=name,
        title=document.get("title", name),
        description=document.get("description", ""),
        document=document,
        styles=_styles(document, source),
        source=source,
    )


def load_schema(path: str | os.PathLike[str]) -> RecordSchema:
    """Load a JSON Schema file (one of ours or a user's own) as a record kind."""
    p = Path(path)
    name = p.name[: -len(SCHEMA_SUFFIX)] if p.name.endswith(SCHEMA_SUFFIX) else p.stem
    try:
        document = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise SchemaError(f"cannot read schema: {e.strerror or e}", path=str(path)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SchemaError(f"not a JSON document: {e}", path=str(path)) from None
    return _from_document(document, name, str(path))


@functools.cache
def _registry() -> dict[str, RecordSchema]:
    directory = schema_dir()
    found = {}
    for p in sorted(directory.glob(f"*{SCHEMA_SUFFIX}")):
        schema = load_schema(p)
        found[schema.name] = schema
    if not found:
        raise SchemaError("no bundled schemas found; the installation is incomplete", path=str(directory))
    return found


def list_schemas() -> list[RecordSchema]:
    """The bundled record kinds, sorted by name."""
    return list(_registry().values())


def get_schema(name_or_path: str | os.PathLike[str]) -> RecordSchema:
    """A bundled record kind by name (`preference`), or a schema file by path."""
    key = str(name_or_path)
    registry = _registry()
    if key in registry:
        return registry[key]
    if key.endswith(".json") or os.sep in key or Path(key).is_file():
        if not Path(key).is_file():
            raise SchemaError("no such schema file", path=key)
        return load_schema(key)
    raise SchemaError(f"unknown schema '{key}'; known schemas: {', '.join(registry)} (or pass a path to a .schema.json file)")
