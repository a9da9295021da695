"""Streaming readers and atomic writers for datakit's data files.

Reads Parquet, JSON Lines (plain, gzip or zstd), JSON arrays, Arrow IPC, `datasets` save folders
and Hub datasets as Arrow record batches that remember their file and line; writes Parquet
shards and whole datasets atomically. The Hub client is only imported when a Hub ref is read.
"""

from __future__ import annotations

from datakit.io.batch import SourceBatch
from datakit.io.reader import read_batches, read_table, scan
from datakit.io.sources import SUPPORTED_SUFFIXES, DataFile, Listing, list_data_files
from datakit.io.writers import ShardWriter, atomic_write, write_parquet_dataset

__all__ = [
    "SUPPORTED_SUFFIXES",
    "DataFile",
    "Listing",
    "ShardWriter",
    "SourceBatch",
    "atomic_write",
    "list_data_files",
    "read_batches",
    "read_table",
    "scan",
    "write_parquet_dataset",
]
