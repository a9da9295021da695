"""Which text a curation step reads from a row: a text column as is, or the turns of one role of a chat."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from datakit.errors import RecipeError
from datakit.pipeline.steps._arrow import require_columns

if TYPE_CHECKING:  # polars is imported where it is used, to keep `import datakit` light
    import polars as pl

TURN_SEPARATOR = "\n\n"


def select_text(batch: pa.RecordBatch, column: str, role: str | None, step_id: str) -> pl.Series:
    """The text to check in each row of `batch` (null where there is none).

    A string column is used as is. A list of chat messages (structs with `role` and `content`, as in
    the `messages` column of sft rows or conversational `prompt`/`chosen`/`rejected`) gives the
    contents of the turns whose role is `role` (every turn when `role` is None), joined by a blank
    line; turns without content (tool calls) are skipped, and content given as a list of parts
    (multimodal turns) contributes its text parts. A row with no such turn gives an empty string.
    """
    import polars as pl

    require_columns(batch, [column], step_id, "column")
    array = batch.column(column)
    kind = array.type
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    if _is_text(kind):
        return series.alias("text")
    if _is_messages(kind):
        turn = pl.element()
        chosen = turn if role is None else turn.filter(turn.struct.field("role") == role)
        content = chosen.struct.field("content")
        if _is_list(kind.value_type.field("content").type):  # multimodal turns: a list of parts
            content = content.list.eval(pl.element().struct.field("text")).list.drop_nulls().list.join("\n")
        joined = pl.col("m").list.eval(content).list.drop_nulls().list.join(TURN_SEPARATOR)
        return pl.DataFrame({"m": series}).select(joined.alias("text")).to_series()
    raise RecipeError(f"column '{column}' holds {kind}, which is neither text nor a list of chat messages "
                      "(structs with role and content)", field=f"steps.{step_id}.with.column")


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind)


def _is_messages(kind: pa.DataType) -> bool:
    if not _is_list(kind):
        return False
    turn = kind.value_type
    if not pa.types.is_struct(turn) or turn.get_field_index("role") < 0 or turn.get_field_index("content") < 0:
        return False
    content = turn.field("content").type
    if _is_list(content):
        part = content.value_type
        return pa.types.is_struct(part) and part.get_field_index("text") >= 0
    return _is_text(content)
