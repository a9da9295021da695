"""Tell which record kind and style a table holds, from its column names and types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from datakit.errors import DataError, SchemaError
from datakit.records.plans import Binder
from datakit.records.schemas import RecordSchema, Style, list_schemas


def structural_problems(schema: RecordSchema, style: Style, arrow_schema: pa.Schema) -> list[tuple[str, str]]:
    """Column-level mismatches (missing columns, wrong types) between a style and an Arrow schema."""
    binder = Binder(schema.resolve)
    binder.bind_object(style.node, pa.struct(list(arrow_schema)), (), nullable=False, null_message="is missing")
    return binder.problems


@dataclass(frozen=True)
class Fit:
    """How well one style fits a table's columns."""

    schema: RecordSchema
    style: Style
    missing: tuple[str, ...]
    explained: int
    problems: int

    @property
    def key(self) -> tuple[int, int, int, int]:
        # All required columns first; then the style that accounts for the most columns (so `prompt, completion,
        # label` is unpaired preference, not prompt-completion with an extra column); then the cleanest fit.
        return (-len(self.missing), self.explained, -self.problems, len(self.style.required))

    @property
    def label(self) -> str:
        return label(self.schema, self.style)


def fit(schema: RecordSchema, style: Style, arrow_schema: pa.Schema) -> Fit:
    names = arrow_schema.names
    missing = tuple(c for c in style.required if c not in names)
    explained = sum(1 for c in names if c in style.columns)
    problems = len(structural_problems(schema, style, arrow_schema))
    return Fit(schema, style, missing, explained, problems)


def pick_style(schema: RecordSchema, arrow_schema: pa.Schema) -> Style:
    """The style of `schema` that fits the columns best (the nearest one when none fits)."""
    if len(schema.styles) == 1:
        return schema.styles[0]
    return max((fit(schema, s, arrow_schema) for s in schema.styles), key=lambda f: f.key).style


def detect_style(arrow_schema: pa.Schema, schemas: Sequence[RecordSchema] | None = None) -> Fit:
    """The record kind and style whose required columns are all present, preferring the one that explains most columns.

    Raises DataError when no kind has all its required columns (naming the nearest and what it lacks) and
    SchemaError when two kinds fit equally well.
    """
    schemas = list(schemas) if schemas is not None else list_schemas()
    fits = sorted((fit(s, st, arrow_schema) for s in schemas for st in s.styles), key=lambda f: f.key, reverse=True)
    columns = ", ".join(arrow_schema.names) or "(none)"
    best = fits[0]
    if best.missing:
        raise DataError(f"the columns ({columns}) match no datakit schema; nearest is {best.label}, "
                        f"which lacks column(s) {', '.join(best.missing)}")
    ties = [f.label for f in fits[1:] if f.key == best.key]
    if ties:
        raise SchemaError(f"the columns ({columns}) fit {best.label} and {', '.join(ties)} equally well; "
                          "choose one with --schema")
    return best


def unexplained_columns(found: Fit, arrow_schema: pa.Schema, schemas: Sequence[RecordSchema] | None = None) -> list[str]:
    """Columns that other record kinds require but the detected style does not use (worth a note to the user)."""
    schemas = list(schemas) if schemas is not None else list_schemas()
    known = {c for s in schemas for st in s.styles for c in st.required}
    return [c for c in arrow_schema.names if c in known and c not in found.style.columns]


def label(schema: RecordSchema, style: Style) -> str:
    """`preference (conversational)`, or just the name for single-style kinds."""
    return schema.name if len(schema.styles) == 1 else f"{schema.name} ({style.name})"
