"""The shared machinery of the heuristic filters: which text to check, the keep mask, and drop counts per reason.

A concrete filter only states its rules: `check(text, rules)` computes, over the whole batch at once,
a boolean "passes" column per rule and hands it to `rules.apply(reason, passes)`. Rules run in the
order they are applied; a row failing several is counted once, under the first one it failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from datakit.pipeline.params import param
from datakit.pipeline.step import MapResult, MapStep
from datakit.curate.text import select_text

if TYPE_CHECKING:  # polars is imported where it is used, to keep `import datakit` light
    import polars as pl

@dataclass(frozen=True)
class TextParams:
    """The parameters every text filter has: which column to read and, for chat messages, which role."""

    column: str = param("text", help="column to check: a text column, or a list of chat messages "
                                     "(e.g. messages, prompt, chosen)")
    role: str | None = param("assistant", help="for a messages column: check the turns of this role, joined "
                                               "by a blank line (null: every turn)")

    def __post_init__(self) -> None:
        if not self.column.strip():
            raise ValueError("column must name a column of the data, got an empty name")
        if self.role is not None and not self.role.strip():
            raise ValueError("role must be a role such as 'assistant', or null for every turn; got an empty name")


def check_fraction(params: Any, *names: str) -> None:
    """Raise ValueError unless each named parameter is null or a fraction in [0, 1]."""
    for name in names:
        value = getattr(params, name)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a fraction between 0 and 1 (or null to disable), got {value}")


def check_bounds(params: Any, low: str, high: str) -> None:
    """Raise ValueError unless both bounds are null or >= 0, and `low` <= `high` when both are set."""
    lo, hi = getattr(params, low), getattr(params, high)
    for name, value in ((low, lo), (high, hi)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be 0 or more (or null to disable), got {value}")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{low} must not exceed {high}, got {low}={lo} and {high}={hi}")


def share(part: Any, whole: Any) -> np.ndarray:
    """`part / whole` element-wise as floats (numpy arrays or polars Series), 0 where `whole` is 0."""
    part, whole = np.asarray(part, dtype=np.float64), np.asarray(whole, dtype=np.float64)
    return np.divide(part, whole, out=np.zeros(len(whole)), where=whole > 0)


class Rules:
    """The keep mask of one batch, and how many rows each rule dropped first, in the order the rules ran."""

    def __init__(self, rows: int) -> None:
        self.keep = np.ones(rows, dtype=bool)
        self.dropped: dict[str, int] = {}

    def apply(self, reason: str, passes: pl.Series | np.ndarray) -> None:
        """Drop the rows still kept that do not pass (null counts as not passing) under `reason`."""
        ok = passes if isinstance(passes, np.ndarray) else passes.fill_null(False).to_numpy()
        ok = ok.astype(bool, copy=False)
        newly = self.keep & ~ok
        count = int(newly.sum())
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        self.keep &= ok


class TextFilter(MapStep):
    """Base of the heuristic filters: selects the text, drops null or blank text as `empty`, runs `check`.

    Subclasses set a `Params` dataclass deriving from `TextParams` and implement `check`.
    """

    pure = True
    Params = TextParams

    def check(self, text: pl.Series, rules: Rules) -> None:
        """Apply this filter's rules to `text` (one string per row, never null) through `rules.apply`."""
        raise NotImplementedError

    def process(self, batch: pa.RecordBatch) -> MapResult:
        text = select_text(batch, self.params.column, self.params.role, self.context.step_id)
        rules = Rules(batch.num_rows)
        rules.apply("empty", text.str.contains(r"\S"))
        self.check(text.fill_null(""), rules)
        return MapResult(batch.filter(pa.array(rules.keep)), dropped=rules.dropped)
