"""Exact deduplication: keep the first occurrence of every distinct key, across the whole dataset.

Two passes over shared storage, with memory bounded by the shard size and a fixed budget for the
index rather than by the dataset:

- build (per shard): a 128-bit hash of each row's key columns; rows repeated inside the shard are
  dropped at once; the rest are stored sorted by bucket (the top 8 bits of the hash), with the
  bucket boundaries beside them.
- finalize: buckets are merged in groups small enough for `MERGE_BYTES`; within a group the parts
  are read in shard order, so the first occurrence of each hash is the earliest row of the dataset.
  The surviving (shard, row) pairs are stored per group, sorted by shard.
- apply (per shard): that shard's surviving rows are gathered from every group and kept.

`normalize: text` compares text after Unicode NFKC normalization, lowercasing, removing punctuation
(Unicode category P; symbols such as "+" or "$" stay) and collapsing whitespace runs to one space,
trimmed at both ends: "Hello,  World!" and "hello world" are one key; "hello-world" becomes
"helloworld". NFKC folds compatibility variants (full-width letters, ligatures, superscripts) into
plain letters. It applies to every text value of the key columns, inside lists and structs too (the
contents of chat messages); other types are compared as they are. Rows keep their original text: only
the key is normalized. The default, `none`, compares exact values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import GlobalStep, Index, MapResult
from datakit.pipeline.steps._arrow import frame

BUCKETS = 256
MERGE_BYTES = 8 * 2**20  # index bytes merged at once in finalize: a few hundred thousand keys
_SEEDS = (0x5EED_0001, 0x5EED_0002)
_DEFAULT_SKIP = ("id", "metadata")
_KEEP_SCHEMA = pa.schema([("shard", pa.uint32()), ("row", pa.uint32())])


def key_hashes(batch: pa.RecordBatch, columns: list[str], step_id: str,
               normalize: Literal["none", "text"] = "none") -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of each row's key columns (together a 128-bit key)."""
    data = frame(batch, columns, step_id, "columns")
    if normalize == "text":
        data = normalized(data)
    return data.hash_rows(seed=_SEEDS[0]).to_numpy(), data.hash_rows(seed=_SEEDS[1]).to_numpy()


def normalized(data: Any) -> Any:
    """The polars frame with every text value (also inside lists and structs) normalized as `normalize: text` says."""
    import polars as pl

    changed = []
    for name, dtype in data.schema.items():
        expr = _normalize_expr(pl.col(name), dtype)
        if expr is not None:
            changed.append(expr.alias(name))
    return data.with_columns(changed) if changed else data


def normalize_text(expr: Any) -> Any:
    """A polars text expression under NFKC, lowercased, without punctuation, whitespace runs made one space, trimmed."""
    return (expr.str.normalize("NFKC").str.to_lowercase().str.replace_all(r"\p{P}+", "")
            .str.replace_all(r"\s+", " ").str.strip_chars())


def _normalize_expr(expr: Any, dtype: Any) -> Any | None:
    """`expr` with its text values normalized, following lists and structs; None when it holds no text."""
    import polars as pl

    if dtype == pl.String:
        return normalize_text(expr)
    if isinstance(dtype, pl.List | pl.Array):
        inner = _normalize_expr(pl.element(), dtype.inner)
        if inner is None:
            return None
        return expr.list.eval(inner) if isinstance(dtype, pl.List) else expr.arr.eval(inner)
    if isinstance(dtype, pl.Struct):
        fields = [(f.name, _normalize_expr(pl.field(f.name), f.dtype)) for f in dtype.fields]
        changed = [e.alias(name) for name, e in fields if e is not None]
        return expr.struct.with_fields(changed) if changed else None
    return None


def first_occurrences(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Indices of the first row of every distinct (hi, lo) pair, in ascending order."""
    import polars as pl

    if len(hi) == 0:
        return np.zeros(0, dtype=np.int64)
    first = pl.DataFrame({"hi": hi, "lo": lo}).select(pl.struct("hi", "lo").is_first_distinct()).to_series()
    return np.flatnonzero(first.to_numpy())


@register("dedup")
class Dedup(GlobalStep):
    """Drop rows whose key columns repeat an earlier row (exact match), keeping the first one."""

    @dataclass(frozen=True)
    class Params:
        columns: list[str] | None = param(None, help="key columns (default: every column except id and metadata)")
        normalize: Literal["none", "text"] = param(
            "none", help="none: exact values; text: compare text after NFKC, lowercasing, removing punctuation "
                         "and collapsing whitespace")

    def version(self) -> str:
        import polars as pl

        return f"polars-hash {pl.__version__}"  # stored hashes are only comparable under one hash function

    def _columns(self, batch: pa.RecordBatch) -> list[str]:
        if self.params.columns is not None:
            return self.params.columns
        return [n for n in batch.schema.names if n not in _DEFAULT_SKIP]

    def build(self, shard: int, batch: pa.RecordBatch, part: Path) -> None:
        hi, lo = key_hashes(batch, self._columns(batch), self.context.step_id, self.params.normalize)
        rows = first_occurrences(hi, lo)
        hi, lo = hi[rows], lo[rows]
        bucket = (hi >> np.uint64(56)).astype(np.uint8)
        order = np.argsort(bucket, kind="stable")  # a radix sort for uint8; rows stay in order per bucket
        table = pa.table({"hi": hi[order], "lo": lo[order], "row": rows[order].astype(np.uint32)})
        with ipc.new_file(part / "keys.arrow", table.schema) as writer:
            writer.write_table(table)
        np.save(part / "bounds.npy", np.searchsorted(bucket[order], np.arange(BUCKETS + 1)).astype(np.int64))

    def finalize(self, index: Index, final: Path) -> None:
        n = index.num_shards or 0
        total = sum((index.part(k) / "keys.arrow").stat().st_size for k in range(n))
        groups = max(1, min(BUCKETS, -(-total // MERGE_BYTES)))
        edges = [g * BUCKETS // groups for g in range(groups + 1)]
        bounds = [np.load(index.part(k) / "bounds.npy") for k in range(n)]
        offsets = np.zeros((groups, n + 1), dtype=np.int64)
        with ipc.new_file(final / "keep.arrow", _KEEP_SCHEMA) as writer:
            for g in range(groups):
                hi, lo, row, sizes = [], [], [], []
                for k in range(n):
                    start, stop = int(bounds[k][edges[g]]), int(bounds[k][edges[g + 1]])
                    sizes.append(stop - start)
                    if stop > start:
                        # Copied out so the file can be closed: only one group's keys stay in memory.
                        with pa.memory_map(str(index.part(k) / "keys.arrow")) as source:
                            piece = ipc.open_file(source).get_batch(0).slice(start, stop - start)
                            hi.append(np.array(piece.column(0)))
                            lo.append(np.array(piece.column(1)))
                            row.append(np.array(piece.column(2)))
                shard = np.repeat(np.arange(n, dtype=np.uint32), sizes)
                keep = first_occurrences(_cat(hi, np.uint64), _cat(lo, np.uint64))  # parts come in shard order
                kept_shard = shard[keep]
                kept_row = _cat(row, np.uint32)[keep]
                order = np.argsort(kept_shard, kind="stable")
                offsets[g, 1:] = np.cumsum(np.bincount(kept_shard, minlength=n))
                writer.write_batch(pa.record_batch([pa.array(kept_shard[order]), pa.array(kept_row[order])],
                                                   schema=_KEEP_SCHEMA))
        np.save(final / "offsets.npy", offsets)

    def apply(self, shard: int, batch: pa.RecordBatch | None, index: Index) -> MapResult:
        assert batch is not None
        offsets = np.load(index.final / "offsets.npy")
        rows = []
        with pa.memory_map(str(index.final / "keep.arrow")) as source:
            reader = ipc.open_file(source)
            for g in range(offsets.shape[0]):
                start, stop = int(offsets[g, shard]), int(offsets[g, shard + 1])
                if stop > start:
                    rows.append(np.array(reader.get_batch(g).column(1).slice(start, stop - start)))
        keep = np.sort(np.concatenate(rows)).astype(np.int64) if rows else np.zeros(0, dtype=np.int64)
        kept = batch.take(pa.array(keep))
        return MapResult(kept, dropped={"duplicate": batch.num_rows - kept.num_rows})


def _cat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
