"""Reading any supported source as a stream of record batches."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pyarrow as pa

from datakit.errors import InputError
from datakit.io._common import check_batch_size, short_message
from datakit.io.batch import SourceBatch
from datakit.io.columnar import scan_arrow, scan_parquet
from datakit.io.json_file import scan_json
from datakit.io.jsonl import scan_jsonl
from datakit.io.sources import DataFile, Listing, list_data_files

DEFAULT_BATCH_SIZE = 65_536

_SCANNERS: dict[str, Callable[[DataFile, int], Iterator[SourceBatch]]] = {
    "parquet": scan_parquet,
    "arrow": scan_arrow,
    "jsonl": scan_jsonl,
    "json": scan_json,
}


def scan(
    source: str | os.PathLike[str] | DataFile | Listing, batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[SourceBatch]:
    """Stream every row of every data file in `source`, in order, in bounded memory.

    Each SourceBatch holds at most `batch_size` rows of one file and says where they came from.
    Columns keep their names and order. Batches need not share a schema: files may differ, and
    within one JSON Lines file a later stretch may bring new optional fields (or widen integers to
    floats), since each stretch of about `JSONL_CHUNK_BYTES` is typed on its own. Files with zero
    rows yield nothing; zero-byte files raise InputError. The source is resolved at once, so a
    missing path fails here rather than at the first batch.
    """
    check_batch_size(batch_size)
    if isinstance(source, DataFile):
        files = [source]
    elif isinstance(source, Listing):
        files = source.files
    else:
        files = list_data_files(source).files
    return _scan_files(files, batch_size)


def _scan_files(files: list[DataFile], batch_size: int) -> Iterator[SourceBatch]:
    for file in files:
        if file.size == 0:
            raise InputError("file is empty", path=file.path)
        yield from _SCANNERS[file.format](file, batch_size)


def read_batches(
    source: str | os.PathLike[str] | DataFile | Listing, batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[pa.RecordBatch]:
    """The record batches of `scan`, without their source positions."""
    return (item.batch for item in scan(source, batch_size))


def read_table(source: str | os.PathLike[str] | DataFile | Listing) -> pa.Table:
    """Load a whole source into one table; meant for small data (tests, notebooks, previews).

    Batches whose schemas differ are unified (missing columns become null, numbers widen); a
    source that holds no rows gives a table with no columns.
    """
    tables = [pa.Table.from_batches([batch]) for batch in read_batches(source)]
    if not tables:
        return pa.table({})
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InputError(
            f"parts of the source have incompatible columns: {short_message(exc)}", path=_display(source)
        ) from None


def _display(source: str | os.PathLike[str] | DataFile | Listing) -> str | None:
    if isinstance(source, DataFile):
        return source.path
    if isinstance(source, Listing):
        return None
    return os.fspath(source)
