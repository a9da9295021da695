"""Atomic writers: single files, Parquet shards and whole Parquet datasets that appear complete or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datakit.errors import DataError, InputError, UsageError
from datakit.io._common import short_message

# Rows gathered before a Parquet row group is written: few, large row groups read fastest.
ROW_GROUP_ROWS = 65_536
# ...unless the rows are wide; this bounds the memory the buffer holds.
ROW_GROUP_BYTES = 128 * 1024 * 1024


def _temp_name(name: str) -> str:
    """A hidden, unique sibling name, so readers listing the folder skip it."""
    return f".{name}.{secrets.token_hex(4)}.tmp"


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Write a file so that `path` holds either its old content or the whole new content.

    Yields a file object on a hidden temp file in the same folder; on success it is flushed,
    fsynced and renamed over `path`. On an exception the temp file is removed and `path` is left
    as it was.
    """
    if mode not in ("w", "wb", "wt"):
        raise UsageError(f"atomic_write only writes new content (mode 'w', 'wt' or 'wb'), got mode '{mode}'")
    target = Path(path)
    temp = target.parent / _temp_name(target.name)
    # os.open with 0o666 lets the umask decide the final permissions, as a plain open() would.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    handle = os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)
    try:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(temp, target)
    except BaseException:
        handle.close()
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


class ShardWriter:
    """Write record batches into Parquet shards `{prefix}-{index:05d}.parquet` of bounded size.

    Each shard is written to a hidden temp file and renamed into place once complete, so a reader
    of the folder never sees half a shard. Every batch is cast to one schema: `schema` if given,
    else the first batch's.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        prefix: str = "part",
        max_rows_per_shard: int = 500_000,
        compression: str = "zstd",
        schema: pa.Schema | None = None,
    ) -> None:
        if max_rows_per_shard < 1:
            raise UsageError(f"max_rows_per_shard must be at least 1, got {max_rows_per_shard}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.max_rows_per_shard = max_rows_per_shard
        self.compression = compression
        self.schema = schema
        self._paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._temp: Path | None = None
        self._shard_rows = 0  # rows in the open shard, written or buffered
        self._buffer: list[pa.RecordBatch] = []
        self._buffer_rows = 0
        self._buffer_bytes = 0
        self._closed = False

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def paths(self) -> list[Path]:
        """The shards completed so far."""
        return list(self._paths)

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        """Append rows, starting a new shard whenever the current one reaches `max_rows_per_shard`."""
        if self._closed:
            raise UsageError("ShardWriter is closed")
        if self.schema is None:
            self.schema = data.schema
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        for batch in batches:
            self._add(_conform(batch, self.schema, self.directory))

    def _add(self, batch: pa.RecordBatch) -> None:
        offset = 0
        while offset < batch.num_rows:
            take = min(batch.num_rows - offset, self.max_rows_per_shard - self._shard_rows)
            part = batch.slice(offset, take)
            self._buffer.append(part)
            self._buffer_rows += take
            self._buffer_bytes += part.nbytes
            self._shard_rows += take
            offset += take
            if self._shard_rows == self.max_rows_per_shard:
                self._finish_shard()
            elif self._buffer_rows >= ROW_GROUP_ROWS or self._buffer_bytes >= ROW_GROUP_BYTES:
                self._flush()

    def _flush(self) -> None:
        """Write the buffered rows as one row group of the open shard."""
        if self._writer is None:
            name = f"{self.prefix}-{len(self._paths):05d}.parquet"
            self._temp = self.directory / _temp_name(name)
            self._writer = pq.ParquetWriter(self._temp, self.schema, compression=self.compression)
        if self._buffer:
            self._writer.write_table(pa.Table.from_batches(self._buffer, schema=self.schema))
        self._buffer, self._buffer_rows, self._buffer_bytes = [], 0, 0

    def _finish_shard(self) -> None:
        self._flush()
        assert self._writer is not None and self._temp is not None
        self._writer.close()
        self._writer = None
        with open(self._temp, "rb+") as handle:
            os.fsync(handle.fileno())
        final = self.directory / f"{self.prefix}-{len(self._paths):05d}.parquet"
        os.replace(self._temp, final)
        self._temp = None
        self._paths.append(final)
        self._shard_rows = 0

    def close(self) -> list[Path]:
        """Complete the open shard and return the paths of all shards, in order.

        With no rows written, one empty shard is written if a schema is known, else none.
        """
        if not self._closed:
            try:
                if self._shard_rows or (not self._paths and self.schema is not None):
                    self._finish_shard()
            except BaseException:
                self.abort()
                raise
            _fsync_dir(self.directory)
            self._closed = True
        return list(self._paths)

    def abort(self) -> None:
        """Drop the open shard's temp file; shards already completed stay, since each is whole."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
            self._temp = None
        self._buffer = []
        self._closed = True


def _conform(batch: pa.RecordBatch, schema: pa.Schema, directory: Path) -> pa.RecordBatch:
    """Reorder and cast a batch's columns to `schema`, or raise DataError naming the column."""
    if batch.schema.equals(schema):
        return batch
    names = set(batch.schema.names)
    for name in schema.names:
        if name not in names:
            raise DataError("column is missing from a batch written here", path=str(directory), field=name)
    for name in batch.schema.names:
        if schema.get_field_index(name) < 0:
            raise DataError("column is not in the schema of the shards written here", path=str(directory), field=name)
    columns = []
    for target in schema:
        column = batch.column(target.name)
        if not column.type.equals(target.type):
            try:
                column = pc.cast(column, target.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise DataError(
                    f"cannot convert {column.type} to {target.type}: {short_message(exc)}",
                    path=str(directory),
                    field=target.name,
                ) from None
        if not target.nullable and column.null_count:
            raise DataError("null in a column that does not allow nulls", path=str(directory), field=target.name)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def write_parquet_dataset(
    batches: Iterable[pa.RecordBatch | pa.Table],
    directory: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    **shard_options: Any,
) -> list[Path]:
    """Write all batches as Parquet shards into `directory`, which appears only once complete.

    The shards are written into a hidden sibling folder that is then renamed to `directory`. A
    non-empty `directory` is refused unless `overwrite=True`; the old one is then replaced only
    after the new one is complete. On an exception nothing is left behind and `directory` is
    untouched. `shard_options` go to ShardWriter.
    """
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise InputError("exists and is not a folder", path=str(target))
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise InputError("output folder exists and is not empty (pass overwrite=True to replace it)", path=str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / _temp_name(target.name)
    staging.mkdir()
    try:
        with ShardWriter(staging, **shard_options) as writer:
            for batch in batches:
                writer.write(batch)
        names = [path.name for path in writer.paths]
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [target / name for name in names]


def _swap_in(staging: Path, target: Path) -> None:
    """Put the complete `staging` folder at `target`, replacing what was there."""
    if target.exists():
        # Moved aside rather than deleted first, so a failure here leaves the old data in place.
        old = target.parent / _temp_name(target.name + ".old")
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
    _fsync_dir(target.parent)
