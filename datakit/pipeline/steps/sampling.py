"""Seeded sampling, a global shuffle and a row limit.

Randomness is drawn per row from the run seed, the step id and the row's content (see
`Step.row_seeds`), so the same rows are picked whatever the shard size, worker count or executor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from datakit.errors import RecipeError
from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.rundir import read_json, write_json
from datakit.pipeline.step import GlobalStep, Index, MapResult, MapStep

_KEY = "__shuffle_key"
# Fine buckets of the shuffle key: each output shard takes a contiguous range of them.
_BUCKET_BITS = 12


@register("sample")
class Sample(MapStep):
    """Keep each row with probability `fraction`, decided by a seeded hash of the row."""

    pure = True
    uses_seed = True

    @dataclass(frozen=True)
    class Params:
        fraction: float = param(help="share of rows to keep, in (0, 1]")
        by: list[str] | None = param(None, help="columns that identify a row (default: all columns)")

        def __post_init__(self) -> None:
            if not 0 < self.fraction <= 1:
                raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")

    def process(self, batch: pa.RecordBatch) -> MapResult:
        draws = self.row_seeds(batch, self.params.by).astype(np.float64) / 2.0**64
        kept = batch.filter(pa.array(draws < self.params.fraction))
        return MapResult(kept, dropped={"not_sampled": batch.num_rows - kept.num_rows})


@register("shuffle")
class Shuffle(GlobalStep):
    """Shuffle all rows across shards with the run seed, in memory bounded by the shard size.

    Build gives each row a seeded random key and stores the shard sorted by key; output shard j
    gathers one range of keys from every part, so every row lands in exactly one output shard.
    """

    uses_seed = True
    apply_needs_input = False

    @dataclass(frozen=True)
    class Params:
        pass

    def build(self, shard: int, batch: pa.RecordBatch, part: Path) -> None:
        # The shard and position go into the key, so identical rows still move independently.
        positions = pa.RecordBatch.from_arrays(
            [pa.array(np.full(batch.num_rows, shard, dtype=np.int64)), pa.array(np.arange(batch.num_rows))],
            names=["s", "r"])
        keys = self.row_seeds(positions)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        table = pa.Table.from_batches([batch]).take(pa.array(order)).append_column(_KEY, pa.array(keys))
        with ipc.new_file(part / "rows.arrow", table.schema) as writer:
            writer.write_table(table)
        bounds = np.searchsorted(keys >> np.uint64(64 - _BUCKET_BITS), np.arange((1 << _BUCKET_BITS) + 1))
        np.save(part / "bounds.npy", bounds.astype(np.int64))

    def finalize(self, index: Index, final: Path) -> None:
        write_json(final / "shuffle.json", {"num_shards": index.num_shards})

    def apply(self, shard: int, batch: pa.RecordBatch | None, index: Index) -> pa.Table:
        n = index.num_shards or 1
        buckets = 1 << _BUCKET_BITS
        lo, hi = shard * buckets // n, (shard + 1) * buckets // n
        pieces = []
        for k in range(n):
            part = index.part(k)
            bounds = np.load(part / "bounds.npy")
            start, stop = int(bounds[lo]), int(bounds[hi])
            if stop > start:
                with ipc.open_file(pa.memory_map(str(part / "rows.arrow"))) as reader:
                    pieces.append(reader.read_all().slice(start, stop - start))
        if not pieces:
            with ipc.open_file(pa.memory_map(str(index.part(0) / "rows.arrow"))) as reader:
                schema = reader.schema
            return schema.empty_table().drop_columns([_KEY])
        table = pa.concat_tables(pieces, promote_options="permissive")
        table = table.take(pc.sort_indices(table.column(_KEY)))
        return table.drop_columns([_KEY]).combine_chunks()


@register("limit")
class Limit(GlobalStep):
    """Keep the first `rows` rows of the dataset, in order."""

    @dataclass(frozen=True)
    class Params:
        rows: int = param(help="how many rows to keep")

        def __post_init__(self) -> None:
            if self.rows < 0:
                raise ValueError(f"rows must be 0 or more, got {self.rows}")

    def build(self, shard: int, batch: pa.RecordBatch, part: Path) -> None:
        write_json(part / "count.json", {"rows": batch.num_rows})

    def finalize(self, index: Index, final: Path) -> None:
        before, starts = 0, []
        for k in range(index.num_shards or 0):
            starts.append(before)
            before += read_json(index.part(k) / "count.json")["rows"]
        (final / "starts.json").write_text(json.dumps(starts))

    def apply(self, shard: int, batch: pa.RecordBatch | None, index: Index) -> MapResult:
        assert batch is not None
        start = json.loads((index.final / "starts.json").read_text())[shard]
        keep = max(0, min(batch.num_rows, self.params.rows - start))
        return MapResult(batch.slice(0, keep), dropped={"over_limit": batch.num_rows - keep})


@register("top_k")
class TopK(GlobalStep):
    """Keep the `k` rows with the largest (or smallest) value of one numeric column, in their original order.

    Ties at the cut are broken by position (earlier shard and row first), so the result does not
    depend on worker count or executor. Rows whose value is null never make the cut.
    """

    @dataclass(frozen=True)
    class Params:
        by: str = param(help="numeric column to rank rows by")
        k: int = param(help="how many rows to keep")
        descending: bool = param(True, help="keep the largest values (false: the smallest)")

        def __post_init__(self) -> None:
            if self.k < 0:
                raise ValueError(f"k must be 0 or more, got {self.k}")

    def _keys(self, shard: int, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        from datakit.pipeline.steps._arrow import require_columns

        require_columns(batch, [self.params.by], self.context.step_id, "by")
        column = batch.column(self.params.by)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise RecipeError(f"top_k ranks by a numeric column; '{self.params.by}' holds {column.type}",
                              field=f"steps.{self.context.step_id}.with.by")
        values = pc.fill_null(pc.cast(column, pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        values = -values if self.params.descending else values.copy()
        values[np.isnan(values)] = np.inf  # nulls and NaNs rank last
        positions = (np.int64(shard) << np.int64(32)) + np.arange(batch.num_rows, dtype=np.int64)
        return values, positions

    def build(self, shard: int, batch: pa.RecordBatch, part: Path) -> None:
        values, positions = self._keys(shard, batch)
        order = np.lexsort((positions, values))[: self.params.k]
        np.save(part / "values.npy", values[order])
        np.save(part / "positions.npy", positions[order])

    def finalize(self, index: Index, final: Path) -> None:
        values = [np.load(index.part(k) / "values.npy") for k in range(index.num_shards or 0)]
        positions = [np.load(index.part(k) / "positions.npy") for k in range(index.num_shards or 0)]
        values_all = np.concatenate(values) if values else np.empty(0)
        positions_all = np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)
        keep = np.isfinite(values_all)
        values_all, positions_all = values_all[keep], positions_all[keep]
        order = np.lexsort((positions_all, values_all))[: self.params.k]
        np.save(final / "kept.npy", np.sort(positions_all[order]))

    def apply(self, shard: int, batch: pa.RecordBatch | None, index: Index) -> MapResult:
        assert batch is not None
        kept = np.load(index.final / "kept.npy")
        _, positions = self._keys(shard, batch)
        mask = np.isin(positions, kept)
        return MapResult(batch.filter(pa.array(mask)), dropped={"not_top_k": int(batch.num_rows - mask.sum())})
