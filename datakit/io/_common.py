"""Small helpers shared by the readers and writers."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from datakit.errors import UsageError


def short_message(exc: BaseException) -> str:
    """First line of an exception's message, so that error messages stay on one line."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def slices(batch: pa.RecordBatch, batch_size: int) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Zero-copy slices of at most `batch_size` rows, with each slice's offset in `batch`."""
    if batch.num_rows <= batch_size:
        if batch.num_rows:
            yield 0, batch
        return
    for offset in range(0, batch.num_rows, batch_size):
        yield offset, batch.slice(offset, batch_size)


def check_batch_size(batch_size: int) -> None:
    """Reject batch sizes that would make the readers loop forever or yield nothing."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
