"""Small Arrow <-> polars helpers for the built-in steps."""

from __future__ import annotations

import functools
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from datakit.errors import RecipeError

_PLAIN = {pa.large_string(): pa.string(), pa.string_view(): pa.string(), pa.large_binary(): pa.binary(),
          pa.binary_view(): pa.binary()}


def plain(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Turn the large/view string types polars hands back into plain ones, so column types stay stable."""
    target = _PLAIN.get(array.type)
    if target is not None:
        return pc.cast(array, target)
    if pa.types.is_large_list(array.type):
        return pc.cast(array, pa.list_(_plain_type(array.type.value_type)))
    return array


def _plain_type(tp: pa.DataType) -> pa.DataType:
    return _PLAIN.get(tp, tp)


def require_columns(batch: pa.RecordBatch, columns: list[str], step_id: str, key: str) -> None:
    """Raise a RecipeError naming the step parameter when `batch` lacks one of `columns`."""
    missing = [c for c in columns if c not in batch.schema.names]
    if missing:
        raise RecipeError(f"column '{missing[0]}' is not in the data; columns: {', '.join(batch.schema.names)}",
                          field=f"steps.{step_id}.with.{key}")


def frame(batch: pa.RecordBatch, columns: list[str], step_id: str, key: str) -> Any:
    """A polars frame of just `columns` of `batch`, or a RecipeError naming the missing column."""
    import polars as pl

    require_columns(batch, columns, step_id, key)
    return pl.from_arrow(batch.select(columns)) if columns else pl.DataFrame(height=batch.num_rows)


@functools.lru_cache(maxsize=256)
def sql_expr(text: str, key: str) -> Any:
    """Parse a SQL expression (polars dialect); a ValueError names the parameter, for recipe checking."""
    import polars as pl

    try:
        return pl.sql_expr(text)
    except Exception as exc:  # polars raises its own SQL error types
        error = ValueError(f"not a valid SQL expression {text!r}: {exc}")
        error.key = key  # type: ignore[attr-defined]
        raise error from None
