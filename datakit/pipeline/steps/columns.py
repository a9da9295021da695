"""Column steps: keep rows matching a SQL condition, select, rename, drop or derive columns.

Expressions use the SQL dialect of polars (`length(text) > 20 AND lang = 'en'`), evaluated over
whole columns; only the columns an expression names are converted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from datakit.errors import RecipeError
from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import MapResult, MapStep
from datakit.pipeline.steps._arrow import frame, plain, require_columns, sql_expr


@register("filter")
class Filter(MapStep):
    """Keep the rows for which a SQL condition is true (null counts as false)."""

    pure = True

    @dataclass(frozen=True)
    class Params:
        where: str = param(help="SQL condition over the columns, e.g. \"length(text) >= 20 AND score > 0.5\"")
        reason: str = param("filtered", help="name of the drop reason in the run summary")

        def __post_init__(self) -> None:
            sql_expr(self.where, "where")

    def process(self, batch: pa.RecordBatch) -> MapResult:
        expr = sql_expr(self.params.where, "where")
        data = frame(batch, _names(expr), self.context.step_id, "where")
        mask = data.select(expr.fill_null(False)).to_series().to_arrow()
        kept = batch.filter(mask)
        return MapResult(kept, dropped={self.params.reason: batch.num_rows - kept.num_rows})


@register("select")
class Select(MapStep):
    """Keep only the listed columns, in that order."""

    pure = True

    @dataclass(frozen=True)
    class Params:
        columns: list[str] = param(help="columns to keep, in order")

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        require_columns(batch, self.params.columns, self.context.step_id, "columns")
        return batch.select(self.params.columns)


@register("drop")
class Drop(MapStep):
    """Remove the listed columns."""

    pure = True

    @dataclass(frozen=True)
    class Params:
        columns: list[str] = param(help="columns to remove")
        missing_ok: bool = param(False, help="do not complain about listed columns the data lacks")

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self.params.missing_ok:
            require_columns(batch, self.params.columns, self.context.step_id, "columns")
        keep = [n for n in batch.schema.names if n not in self.params.columns]
        return batch.select(keep)


@register("rename")
class Rename(MapStep):
    """Rename columns: `{old: new}`."""

    pure = True

    @dataclass(frozen=True)
    class Params:
        columns: dict[str, str] = param(help="mapping of old name to new name")

        def __post_init__(self) -> None:
            targets = list(self.columns.values())
            if len(set(targets)) != len(targets):
                raise ValueError("two columns would get the same new name")

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        require_columns(batch, list(self.params.columns), self.context.step_id, "columns")
        names = [self.params.columns.get(n, n) for n in batch.schema.names]
        if len(set(names)) != len(names):
            raise RecipeError("renaming would give two columns the same name",
                              field=f"steps.{self.context.step_id}.with.columns")
        return batch.rename_columns(names)


@register("derive")
class Derive(MapStep):
    """Add or replace columns computed by SQL expressions: `{n_words: "array_length(string_to_array(text, ' '))"}`."""

    pure = True

    @dataclass(frozen=True)
    class Params:
        columns: dict[str, str] = param(help="mapping of column name to SQL expression; later ones see earlier ones")

        def __post_init__(self) -> None:
            for name, text in self.columns.items():
                sql_expr(text, f"columns.{name}")

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        for name, text in self.params.columns.items():
            expr = sql_expr(text, f"columns.{name}")
            data = frame(batch, _names(expr), self.context.step_id, f"columns.{name}")
            values = data.select(expr.alias(name)).to_series()
            if len(values) == 1 and batch.num_rows != 1:  # a constant expression
                values = values.extend_constant(values[0], batch.num_rows - 1)
            column = plain(values.to_arrow())
            if name in batch.schema.names:
                batch = batch.set_column(batch.schema.get_field_index(name), name, column)
            else:
                batch = batch.append_column(name, column)
        return batch


def _names(expr: Any) -> list[str]:
    """The columns an expression reads, each once (polars lists a column as often as the expression names it)."""
    return list(dict.fromkeys(expr.meta.root_names()))
