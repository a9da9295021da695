"""Pairing ranked responses into preference data: chosen = best score, rejected = worst, with a margin rule."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from datakit.generate.rows import content_id, with_columns
from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import MapResult, MapStep
from datakit.pipeline.steps._arrow import require_columns


def best_and_worst(scores: list[float]) -> tuple[int, int]:
    """Indices of the highest and the lowest score; among equal scores the earliest wins (deterministic)."""
    values = np.asarray(scores, dtype=np.float64)
    return int(np.argmax(values)), int(np.argmin(values))


@register("pair")
class Pair(MapStep):
    """Turn `ranked` rows (prompt, completions, scores) into `preference` rows (prompt, chosen, rejected).

    Chosen is the best-scored completion and rejected the worst (Magpie-DPO). Unlike the reference,
    a pair whose scores differ by no more than `min_margin` is dropped as `tie`, and a pair whose
    texts are equal as `identical`, so chosen never equals rejected. `score_chosen` and
    `score_rejected` are kept for later filtering.
    """

    pure = True

    @dataclass(frozen=True)
    class Params:
        min_margin: float = param(0.0, help="drop pairs whose score gap is not above this (0: only exact ties)")

        def __post_init__(self) -> None:
            if self.min_margin < 0:
                raise ValueError(f"min_margin must be 0 or more, got {self.min_margin}")

    def process(self, batch: pa.RecordBatch) -> MapResult:
        require_columns(batch, ["prompt", "completions", "scores"], self.context.step_id, "min_margin")
        completions = batch.column("completions").to_pylist()
        scores = batch.column("scores").to_pylist()
        prompts = batch.column("prompt").to_pylist()
        kept, chosen, rejected, high, low, ids = [], [], [], [], [], []
        dropped = {"tie": 0, "identical": 0}
        failed = []
        for i, (options, values) in enumerate(zip(completions, scores)):
            if not options or values is None or len(options) != len(values):
                failed.append((i, "completions and scores differ in length"))
                continue
            best, worst = best_and_worst(values)
            if values[best] - values[worst] <= self.params.min_margin:
                dropped["tie"] += 1
                continue
            if options[best] == options[worst]:
                dropped["identical"] += 1
                continue
            kept.append(i)
            chosen.append(options[best])
            rejected.append(options[worst])
            high.append(float(values[best]))
            low.append(float(values[worst]))
            ids.append(content_id("preference", prompts[i], options[best], options[worst]))
        table = pa.Table.from_batches([batch]).take(pa.array(kept, pa.int64()))
        reply_type = batch.schema.field("completions").type.value_type
        table = with_columns(table, {
            "id": pa.array(ids, pa.string()),
            "chosen": pa.array(chosen, reply_type),
            "rejected": pa.array(rejected, reply_type),
            "score_chosen": pa.array(high, pa.float64()),
            "score_rejected": pa.array(low, pa.float64()),
        })
        table = table.drop_columns([c for c in ("completions", "scores") if c in table.column_names])
        return MapResult(table, failed=failed, dropped={k: v for k, v in dropped.items() if v})
