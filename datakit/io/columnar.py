"""Readers for the columnar formats: Parquet and Arrow IPC (file or stream format)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from datakit.errors import InputError
from datakit.io._common import short_message, slices
from datakit.io.batch import SourceBatch
from datakit.io.sources import DataFile


def scan_parquet(file: DataFile, batch_size: int) -> Iterator[SourceBatch]:
    """Stream a Parquet file row group by row group, in batches of at most `batch_size` rows."""
    with contextlib.ExitStack() as stack:
        source = file.local_path if file.local_path is not None else stack.enter_context(file.open())
        try:
            # No memory map and no pre-buffering: both keep every page read so far resident until the file
            # is closed, which makes a streaming read's memory grow with the file.
            parquet = stack.enter_context(pq.ParquetFile(source, memory_map=False, pre_buffer=False))
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"not a readable Parquet file: {short_message(exc)}", path=file.path) from None
        batches = parquet.iter_batches(batch_size=batch_size)
        yield from _numbered(_guarded(batches, file, "Parquet"), file, batch_size)


def scan_arrow(file: DataFile, batch_size: int) -> Iterator[SourceBatch]:
    """Stream an Arrow IPC file; both the random-access file format and the stream format work.

    `datasets` writes the stream format into `.arrow` files, so when the file format's footer is
    missing the stream format is tried.
    """
    with _open_arrow(file) as source:
        try:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            try:
                batches = iter(pa.ipc.open_stream(source))
            except (OSError, pa.ArrowException) as exc:
                raise InputError(f"not a readable Arrow IPC file: {short_message(exc)}", path=file.path) from None
        yield from _numbered(_guarded(batches, file, "Arrow IPC"), file, batch_size)


def _open_arrow(file: DataFile) -> pa.NativeFile:
    try:
        if file.local_path is not None:
            return pa.memory_map(file.local_path)
        return pa.PythonFile(file.open(), mode="r")
    except OSError as exc:
        raise InputError(f"cannot open: {short_message(exc)}", path=file.path) from None


def _guarded(batches: Iterator[pa.RecordBatch], file: DataFile, kind: str) -> Iterator[pa.RecordBatch]:
    """Re-raise read errors that surface mid-file (a corrupt page, a cut-off stream) as InputError."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"not a readable {kind} file: {short_message(exc)}", path=file.path) from None
        yield batch


def _numbered(batches: Iterator[pa.RecordBatch], file: DataFile, batch_size: int) -> Iterator[SourceBatch]:
    first_row = 0
    for batch in batches:
        for offset, part in slices(batch, batch_size):
            yield SourceBatch(part, file.path, first_row + offset)
        first_row += batch.num_rows
