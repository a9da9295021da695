"""Exact deduplication: keep the first occurrence of every distinct key, across the whole dataset.

Two passes over shared storage with memory bounded by the shard size, not the dataset:

- build (per shard): a 128-bit hash of the key columns for each row; rows repeated inside the
  shard are dropped at once; the rest are stored split into 256 buckets by their top hash bits.
- finalize: bucket by bucket, the parts of every shard are read in shard order and the first
  occurrence of each hash wins; the surviving (shard, row) pairs are stored per bucket.
- apply (per shard): the surviving rows of that shard are gathered from every bucket and kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import GlobalStep, Index, MapResult
from datakit.pipeline.steps._arrow import frame

BUCKETS = 256
_SEEDS = (0x5EED_0001, 0x5EED_0002)
_DEFAULT_SKIP = ("id", "metadata")


def key_hashes(batch: pa.RecordBatch, columns: list[str], step_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of each row's key columns (together a 128-bit key)."""
    data = frame(batch, columns, step_id, "columns")
    return data.hash_rows(seed=_SEEDS[0]).to_numpy(), data.hash_rows(seed=_SEEDS[1]).to_numpy()


def first_occurrences(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Indices of the first row of every distinct (hi, lo) pair, in ascending order."""
    if len(hi) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((lo, hi))  # stable: equal keys stay in row order
    shi, slo = hi[order], lo[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (shi[1:] != shi[:-1]) | (slo[1:] != slo[:-1])
    return np.sort(order[starts])


@register("dedup")
class Dedup(GlobalStep):
    """Drop rows whose key columns repeat an earlier row (exact match), keeping the first one."""

    @dataclass(frozen=True)
    class Params:
        columns: list[str] | None = param(None, help="key columns (default: every column except id and metadata)")

    def version(self) -> str:
        import polars as pl

        return f"polars-hash {pl.__version__}"  # stored hashes are only comparable under one hash function

    def _columns(self, batch: pa.RecordBatch) -> list[str]:
        if self.params.columns is not None:
            return self.params.columns
        return [n for n in batch.schema.names if n not in _DEFAULT_SKIP]

    def build(self, shard: int, batch: pa.RecordBatch, part: Path) -> None:
        hi, lo = key_hashes(batch, self._columns(batch), self.context.step_id)
        rows = first_occurrences(hi, lo)
        hi, lo = hi[rows], lo[rows]
        bucket = (hi >> np.uint64(64 - 8)).astype(np.int64)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(BUCKETS + 1))
        table = pa.table({"hi": hi[order], "lo": lo[order], "row": rows[order].astype(np.uint32)})
        with ipc.new_file(part / "keys.arrow", table.schema) as writer:
            for b in range(BUCKETS):
                writer.write_batch(table.slice(bounds[b], bounds[b + 1] - bounds[b]).combine_chunks().to_batches()[0]
                                   if bounds[b + 1] > bounds[b] else _empty(table.schema))

    def finalize(self, index: Index, final: Path) -> None:
        n = index.num_shards or 0
        readers = [ipc.open_file(pa.memory_map(str(index.part(k) / "keys.arrow"))) for k in range(n)]
        schema = pa.schema([("shard", pa.uint32()), ("row", pa.uint32())])
        counts = np.zeros((BUCKETS, n + 1), dtype=np.int64)
        with ipc.new_file(final / "keep.arrow", schema) as writer:
            for b in range(BUCKETS):
                pieces = [r.get_batch(b) for r in readers]
                hi = np.concatenate([p.column(0).to_numpy() for p in pieces]) if pieces else np.zeros(0, np.uint64)
                lo = np.concatenate([p.column(1).to_numpy() for p in pieces]) if pieces else np.zeros(0, np.uint64)
                row = np.concatenate([p.column(2).to_numpy() for p in pieces]) if pieces else np.zeros(0, np.uint32)
                shard = np.repeat(np.arange(n, dtype=np.uint32), [p.num_rows for p in pieces])
                keep = first_occurrences(hi, lo)  # parts are in shard order, rows in row order
                kept_shard, kept_row = shard[keep], row[keep]  # sorted by shard, since keep is ascending
                counts[b, 1:] = np.cumsum(np.bincount(kept_shard, minlength=n))
                writer.write_batch(pa.record_batch([pa.array(kept_shard), pa.array(kept_row)], schema=schema))
        np.save(final / "offsets.npy", counts)

    def apply(self, shard: int, batch: pa.RecordBatch | None, index: Index) -> MapResult:
        assert batch is not None
        offsets = np.load(index.final / "offsets.npy", mmap_mode="r")
        rows = []
        with ipc.open_file(pa.memory_map(str(index.final / "keep.arrow"))) as reader:
            for b in range(BUCKETS):
                start, stop = int(offsets[b, shard]), int(offsets[b, shard + 1])
                if stop > start:
                    rows.append(reader.get_batch(b).column(1).to_numpy()[start:stop])
        keep = np.sort(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.uint32)
        kept = batch.take(pa.array(keep.astype(np.int64)))
        return MapResult(kept, dropped={"duplicate": batch.num_rows - kept.num_rows})


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)
