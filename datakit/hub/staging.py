"""Stage a dataset folder for publishing: validated rows re-cut into Hub-sized Parquet shards, the manifest, the card.

```
<folder>/data/train-00000-of-00002.parquet   shards of at most ~500 MB, row groups the Hub's viewer can read
<folder>/data/train-00001-of-00002.parquet
<folder>/datakit.json                        the manifest (datakit.hub.manifest)
<folder>/README.md, <folder>/plots/*.png     the dataset card (datakit.hub.card)
```
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datakit.errors import InputError, UsageError
from datakit.hub.manifest import build_manifest, describe_files, read_rows, resolve_source
from datakit.hub.registry import MANIFEST
from datakit.io.writers import _fsync_dir, atomic_write

# The Hub's own uploads (`datasets.Dataset.push_to_hub`) cut shards at 500 MB.
SHARD_BYTES = 500 * 1000 * 1000
# The Hub's dataset viewer reads whole row groups and refuses ones above ~286 MiB in memory; it recommends
# 100-300 MB. Smaller groups also show the first rows sooner, so groups end at 100 MiB or 10,000 rows.
ROW_GROUP_BYTES = 100 * 1024 * 1024
ROW_GROUP_ROWS = 10_000
SPLIT = "train"
VALIDATION_ERRORS_SHOWN = 5


class _ShardCutter:
    """Writes row groups into numbered Parquet shards, starting a new shard once one reaches `shard_bytes` on disk."""

    def __init__(self, directory: Path, schema: pa.Schema, shard_bytes: int) -> None:
        self.directory = directory
        self.schema = schema
        self.shard_bytes = shard_bytes
        self.paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._sink: Any = None

    def write_group(self, table: pa.Table) -> None:
        if self._writer is None:
            path = self.directory / f".shard-{len(self.paths):05d}.parquet"
            self._sink = open(path, "wb")
            self._writer = pq.ParquetWriter(self._sink, self.schema, compression="zstd")
            self.paths.append(path)
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        if self._sink.tell() >= self.shard_bytes:
            self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.flush()
            os.fsync(self._sink.fileno())
            self._sink.close()
            self._writer = None

    def finish(self) -> list[Path]:
        """Close the last shard and give every shard its final `train-0000i-of-0000N` name."""
        if not self.paths:
            self.write_group(self.schema.empty_table())
        self.close()
        final = []
        for i, path in enumerate(self.paths):
            target = self.directory / f"{SPLIT}-{i:05d}-of-{len(self.paths):05d}.parquet"
            os.replace(path, target)
            final.append(target)
        _fsync_dir(self.directory)
        return final


def _row_groups(batches: Iterator[pa.RecordBatch], schema: pa.Schema, max_rows: int,
                max_bytes: int) -> Iterator[pa.Table]:
    """Regroup a stream of batches into tables of at most `max_rows` rows and about `max_bytes` in memory."""
    pending: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            part = batch.slice(offset, max_rows - rows)
            offset += part.num_rows
            pending.append(part)
            rows += part.num_rows
            size += part.nbytes
            if rows >= max_rows or size >= max_bytes:
                yield pa.Table.from_batches(pending, schema=schema)
                pending, rows, size = [], 0, 0
    if pending:
        yield pa.Table.from_batches(pending, schema=schema)


def write_shards(files: list[Path], directory: Path, *, shard_bytes: int = SHARD_BYTES,
                 row_group_rows: int = ROW_GROUP_ROWS, row_group_bytes: int = ROW_GROUP_BYTES) -> list[Path]:
    """Re-cut the rows of `files` into `directory/train-0000i-of-0000N.parquet` (zstd), keeping row order."""
    if shard_bytes < 1 or row_group_rows < 1 or row_group_bytes < 1:
        raise UsageError("shard_bytes, row_group_rows and row_group_bytes must be at least 1")
    directory.mkdir(parents=True, exist_ok=True)
    schema, batches = read_rows(files)
    cutter = _ShardCutter(directory, schema, shard_bytes)
    try:
        for group in _row_groups(batches, schema, row_group_rows, row_group_bytes):
            cutter.write_group(group)
        return cutter.finish()
    except BaseException:
        cutter.close()
        for path in cutter.paths:
            path.unlink(missing_ok=True)
        raise


def check_rows(files: list[Path], schema: str) -> None:
    """Validate every row against the record kind `schema`; refuse (InputError, exit 2) naming the first errors."""
    from datakit.records.validate import validate_batches

    arrow_schema, batches = read_rows(files)
    report = validate_batches(batches, str(files[0].parent), schema)
    if report.failure is not None and report.status == "unusable":
        raise InputError(f"cannot validate the rows as {schema}: {report.failure}", path=report.path)
    if report.error_count:
        shown = "\n  ".join(str(issue) for issue in report.issues[:VALIDATION_ERRORS_SHOWN])
        raise InputError(
            f"the rows do not validate as {report.schema or schema}: {report.error_count:,} error(s) in "
            f"{report.rows_with_errors:,} row(s); first:\n  {shown}\n(check with 'datakit validate --schema "
            f"{schema}', or publish without a schema with --schema none)", path=report.path)


def stage(source: str | os.PathLike[str], folder: str | os.PathLike[str], *, repo: str, version: str,
          output: str | None = None, schema: str | None = "auto", shard_bytes: int = SHARD_BYTES,
          row_group_rows: int = ROW_GROUP_ROWS) -> dict[str, Any]:
    """Stage `source` (a run directory, or a folder or file of rows) into the empty or new `folder` for publishing.

    Builds the manifest (see `build_manifest` for `schema` and `output`), refuses rows that do not validate as
    the manifest's schema, writes the shards, `datakit.json` and the card, and returns the manifest.
    """
    target = Path(folder)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError("the staging folder must be new or empty", path=str(target))
    src = resolve_source(source, output)
    from datakit.hub.card import render_card

    manifest = build_manifest(src, repo, version, schema=schema)
    if manifest["schema"] is not None:
        check_rows(src.files, manifest["schema"])
    shards = write_shards(src.files, target / "data", shard_bytes=shard_bytes, row_group_rows=row_group_rows)
    manifest["files"] = describe_files(target, shards)
    manifest["splits"] = {SPLIT: {"rows": manifest["rows"], "files": [f["path"] for f in manifest["files"]]}}
    write_manifest(target, manifest)
    render_card(manifest, target)
    return manifest


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """Write `folder/datakit.json` atomically, keys in the manifest's reading order."""
    path = folder / MANIFEST
    with atomic_write(path, "w") as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    return path
