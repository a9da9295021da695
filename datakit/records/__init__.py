"""Record kinds: JSON Schema loading, Arrow type derivation and vectorized validation."""

from __future__ import annotations

from datakit.records.detect import detect_style
from datakit.records.schemas import (
    RecordSchema,
    Style,
    get_schema,
    list_schemas,
    load_schema,
)
from datakit.records.validate import (
    FileReport,
    Issue,
    Validation,
    Validator,
    validate,
    validate_batches,
    validate_table,
)

__all__ = [
    "FileReport",
    "Issue",
    "RecordSchema",
    "Style",
    "Validation",
    "Validator",
    "detect_style",
    "get_schema",
    "list_schemas",
    "load_schema",
    "validate",
    "validate_batches",
    "validate_table",
]
