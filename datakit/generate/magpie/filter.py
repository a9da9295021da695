"""The Magpie "300K-Filtered" selection rules as one step, each rule a parameter and a named drop reason.

Defaults follow the reference notebook: input quality good or excellent, reward above -10, no
instruction ending with ':'. The Llama-3.1 MT card adds "fewer than 5 newlines unless Coding &
Debugging" (`max_newlines: 4`); the DPO subsets add "difficulty at least medium" (`min_difficulty`).
Dedup, the top-K by response length and the seeded shuffle are the recipe's next steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import MapResult, MapStep
from datakit.pipeline.steps._arrow import require_columns

DIFFICULTY = ("very easy", "easy", "medium", "hard", "very hard")


@register("magpie_filter")
class MagpieFilter(MapStep):
    """Keep rows that pass every enabled Magpie quality rule; each rule drops under its own reason."""

    pure = True

    @dataclass(frozen=True)
    class Params:
        input_quality: list[str] | None = param(default_factory=lambda: ["good", "excellent"],
                                                help="accepted input_quality tags (null: no check)")
        min_reward: float | None = param(-10.0, help="keep rows whose reward is above this (null: no check)")
        reward_column: str = param("instruct_reward", help="column holding the reward score")
        instruction_column: str = param("instruction", help="column holding the instruction")
        no_trailing_colon: bool = param(True, help="drop instructions ending with ':' (usually cut-off lead-ins)")
        max_newlines: int | None = param(None, help="drop instructions with more newlines than this (null: no check)")
        newline_exempt: list[str] = param(default_factory=lambda: ["Coding & Debugging"],
                                          help="task categories exempt from max_newlines")
        min_difficulty: str | None = param(None, help=f"drop rows easier than this: one of {', '.join(DIFFICULTY)}")

        def __post_init__(self) -> None:
            if self.min_difficulty is not None and self.min_difficulty not in DIFFICULTY:
                raise ValueError(f"min_difficulty must be one of {', '.join(DIFFICULTY)}, got {self.min_difficulty!r}")

    def process(self, batch: pa.RecordBatch) -> MapResult:
        p = self.params
        step = self.context.step_id
        keep = np.ones(batch.num_rows, dtype=bool)
        dropped: dict[str, int] = {}

        def rule(reason: str, passes: pa.Array) -> None:
            ok = pc.fill_null(passes, False).to_numpy(zero_copy_only=False)
            newly = keep & ~ok
            if newly.any():
                dropped[reason] = int(newly.sum())
            keep[:] = keep & ok

        if p.input_quality is not None:
            require_columns(batch, ["input_quality"], step, "input_quality")
            rule("input_quality", pc.is_in(batch.column("input_quality"), pa.array(p.input_quality, pa.string())))
        if p.min_reward is not None:
            require_columns(batch, [p.reward_column], step, "reward_column")
            rule("low_reward", pc.greater(batch.column(p.reward_column), p.min_reward))
        if p.min_difficulty is not None:
            require_columns(batch, ["difficulty"], step, "min_difficulty")
            allowed = DIFFICULTY[DIFFICULTY.index(p.min_difficulty):]
            rule("too_easy", pc.is_in(batch.column("difficulty"), pa.array(allowed, pa.string())))
        if p.no_trailing_colon or p.max_newlines is not None:
            require_columns(batch, [p.instruction_column], step, "instruction_column")
            text = batch.column(p.instruction_column)
        if p.no_trailing_colon:
            rule("trailing_colon", pc.invert(pc.ends_with(pc.utf8_rtrim_whitespace(text), ":")))
        if p.max_newlines is not None:
            lines_ok = pc.less_equal(pc.count_substring(text, "\n"), p.max_newlines)
            if p.newline_exempt and "task_category" in batch.schema.names:
                exempt = pc.is_in(batch.column("task_category"), pa.array(p.newline_exempt, pa.string()))
                lines_ok = pc.or_(lines_ok, pc.fill_null(exempt, False))
            rule("too_many_lines", lines_ok)
        return MapResult(batch.filter(pa.array(keep)), dropped=dropped)
