"""Streaming JSON Lines reader: chunked Arrow parsing, exact line numbers, precise errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from datakit.errors import DataError, InputError
from datakit.io._common import short_message
from datakit.io.batch import SourceBatch
from datakit.io.json_kinds import KindTracker, conflict_message, json_kind
from datakit.io.sources import DataFile

# Bytes handed to Arrow's JSON parser at a time; bounds memory to about this plus the longest line.
JSONL_CHUNK_BYTES = 16 * 1024 * 1024
# Arrow parses a chunk in blocks on several threads; each block must hold at least one whole line.
MIN_BLOCK_BYTES = 1024 * 1024

_NEWLINE = 0x0A
_OPEN_BRACE = 0x7B
# What Arrow's parser treats as blank: space, tab, CR and LF.
_BLANK_BYTES = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


def open_text(file: DataFile) -> pa.NativeFile:
    """The file's bytes as an Arrow input stream, decompressed when the file is gzip or zstd."""
    try:
        raw = pa.OSFile(file.local_path) if file.local_path is not None else pa.PythonFile(file.open(), mode="r")
        return pa.CompressedInputStream(raw, file.compression) if file.compression else raw
    except InputError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot open: {short_message(exc)}", path=file.path) from None


def read_piece(stream: pa.NativeFile, size: int, file: DataFile) -> bytes:
    """Read up to `size` bytes, turning decompression failures into InputError."""
    try:
        return stream.read(size)
    except (OSError, pa.ArrowException) as exc:
        what = f"not a readable {file.compression} file" if file.compression else "cannot read"
        raise InputError(f"{what}: {short_message(exc)}", path=file.path) from None


def scan_jsonl(
    file: DataFile,
    batch_size: int,
    *,
    chunk_bytes: int | None = None,
    stream: pa.NativeFile | None = None,
    head: bytes = b"",
    hint: str = "",
) -> Iterator[SourceBatch]:
    """Stream a JSON Lines file as batches of at most `batch_size` rows, with each row's line number.

    `stream` and `head` let the `.json` reader hand over a stream it has already started reading;
    `hint` is appended to invalid-JSON messages.
    """
    chunk_bytes = chunk_bytes or JSONL_CHUNK_BYTES
    if stream is None:
        stream = open_text(file)
    with stream:
        first_line = 1
        first_row = 0
        kinds = KindTracker()
        saw_bytes = bool(head)
        for chunk, at_end in _chunks(stream, chunk_bytes, head, file):
            saw_bytes = True
            table, lines, line_count = _parse_chunk(chunk, first_line, at_end, file.path, kinds, hint)
            first_line += line_count
            if table.num_rows == 0:
                continue
            for batch in table.combine_chunks().to_batches(max_chunksize=batch_size):
                yield SourceBatch(batch, file.path, first_row, lines[: batch.num_rows])
                lines = lines[batch.num_rows :]
                first_row += batch.num_rows
        if not saw_bytes:
            raise InputError("file is empty", path=file.path)


def _chunks(stream: pa.NativeFile, chunk_bytes: int, head: bytes, file: DataFile) -> Iterator[tuple[bytes, bool]]:
    """Yield runs of whole lines (each ending in a newline, except maybe the file's last).

    The bool is True for the final run; a line longer than `chunk_bytes` grows its run until the
    line's newline is found.
    """
    parts: list[bytes | memoryview] = [head] if head else []
    while True:
        piece = read_piece(stream, chunk_bytes, file)
        if not piece:
            break
        cut = piece.rfind(b"\n") + 1
        if cut == 0:
            parts.append(piece)
            continue
        view = memoryview(piece)
        parts.append(view[:cut])
        yield b"".join(parts), False
        parts = [view[cut:]] if cut < len(piece) else []
    tail = b"".join(parts)
    if tail:
        yield tail, True


def _parse_chunk(
    chunk: bytes, first_line: int, at_end: bool, display: str, kinds: KindTracker, hint: str
) -> tuple[pa.Table, np.ndarray, int]:
    """Parse whole lines with Arrow; return the table, the 1-based line of each row, and the newlines read."""
    _check_utf8(chunk, first_line, display)
    data = np.frombuffer(chunk, dtype=np.uint8)
    newlines = np.flatnonzero(data == _NEWLINE)
    starts = np.concatenate(([0], newlines + 1))
    if starts[-1] == len(chunk):
        starts = starts[:-1]
    ends = np.append(starts[1:], len(chunk))
    longest = int((ends - starts).max())
    options = pa_json.ReadOptions(use_threads=True, block_size=max(MIN_BLOCK_BYTES, longest + 1))
    try:
        table = pa_json.read_json(pa.BufferReader(chunk), read_options=options)
    except pa.ArrowInvalid as exc:
        _diagnose(chunk, first_line, at_end, display, kinds, hint, short_message(exc))
    if _has_timestamp(table.schema):
        table = _reread_as_strings(chunk, options, table.schema)
    objects = _object_lines(chunk, data, starts, ends)
    if objects is None or len(objects) != table.num_rows or kinds.conflicts_with_schema(table.schema):
        # A line that is not an object, more rows than lines (a line holding several values), or a
        # type that differs from earlier chunks: Arrow accepted the chunk, but name the bad line.
        _diagnose(chunk, first_line, at_end, display, kinds, hint, "rows do not match the lines read")
    lines = first_line + objects
    kinds.seed_from_schema(table.schema)
    return table, lines, len(newlines)


def _object_lines(chunk: bytes, data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """0-based indexes of the non-blank lines (Arrow skips blank ones), or None if one is no object.

    Arrow reads a `null` line as a row of nulls; returning None sends such chunks to diagnosis.
    """
    # Nearly every line starts with `{`; only the others need a closer look.
    others = np.flatnonzero(data[starts] != _OPEN_BRACE)
    if len(others) == 0:
        return np.arange(len(starts), dtype=np.int64)
    keep = np.ones(len(starts), dtype=bool)
    for index in others.tolist():
        content = chunk[starts[index] : ends[index]].strip(_BLANK_BYTES).removeprefix(_BOM)
        if content and not content.startswith(b"{"):
            return None
        keep[index] = bool(content)
    return np.flatnonzero(keep).astype(np.int64)


def _check_utf8(chunk: bytes, first_line: int, display: str) -> None:
    # Arrow's parser lets invalid UTF-8 through inside strings, so check before parsing.
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = chunk.rfind(b"\n", 0, exc.start) + 1
        column = len(chunk[line_start : exc.start].decode("utf-8")) + 1
        line = first_line + chunk.count(b"\n", 0, exc.start)
        raise InputError(
            f"invalid UTF-8 (byte 0x{chunk[exc.start]:02x} at column {column})", path=display, row=line
        ) from None


def _has_timestamp(schema: pa.Schema) -> bool:
    return any(_type_has_timestamp(f.type) for f in schema)


def _type_has_timestamp(arrow_type: pa.DataType) -> bool:
    if pa.types.is_timestamp(arrow_type):
        return True
    if pa.types.is_struct(arrow_type):
        return any(_type_has_timestamp(f.type) for f in arrow_type)
    if pa.types.is_list(arrow_type):
        return _type_has_timestamp(arrow_type.value_type)
    return False


def _as_string_type(arrow_type: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(arrow_type):
        return pa.string()
    if pa.types.is_struct(arrow_type):
        return pa.struct([f.with_type(_as_string_type(f.type)) for f in arrow_type])
    if pa.types.is_list(arrow_type):
        return pa.list_(arrow_type.value_field.with_type(_as_string_type(arrow_type.value_type)))
    return arrow_type


def _reread_as_strings(chunk: bytes, options: pa_json.ReadOptions, schema: pa.Schema) -> pa.Table:
    """Parse again with date-like strings kept as the strings they are in the file.

    Arrow infers timestamps from ISO dates; datakit keeps text exactly as written.
    """
    explicit = pa.schema([f.with_type(_as_string_type(f.type)) for f in schema])
    parse = pa_json.ParseOptions(explicit_schema=explicit, unexpected_field_behavior="infer")
    return pa_json.read_json(pa.BufferReader(chunk), read_options=options, parse_options=parse)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value


def _diagnose(
    chunk: bytes, first_line: int, at_end: bool, display: str, kinds: KindTracker, hint: str, arrow_message: str
) -> NoReturn:
    """Find the first line of a chunk Arrow could not load and raise an error that names it.

    Error path only, so plain Python per line is fine here.
    """
    raw_lines = chunk.split(b"\n")
    if chunk.endswith(b"\n"):
        raw_lines.pop()
    for index, raw in enumerate(raw_lines):
        line = first_line + index
        text = raw.decode("utf-8")
        if line == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip(" \t\r\n"):
            continue
        try:
            value = json.loads(text, object_pairs_hook=_no_duplicates)
        except _DuplicateKey as exc:
            raise InputError(f"duplicate key '{exc.key}'", path=display, row=line) from None
        except json.JSONDecodeError as exc:
            message = f"invalid JSON: {exc.msg} (column {exc.colno})"
            if at_end and index == len(raw_lines) - 1 and not chunk.endswith(b"\n"):
                message += "; the file looks truncated"
            raise InputError(message + hint, path=display, row=line) from None
        if not isinstance(value, dict):
            raise InputError(f"expected a JSON object, found {json_kind(value)}", path=display, row=line)
        conflict = kinds.check(value, line)
        if conflict:
            field, found, expected, first_seen = conflict
            raise DataError(conflict_message(found, expected, first_seen, line), path=display, row=line, field=field)
    last = first_line + len(raw_lines) - 1
    raise InputError(f"could not load lines {first_line}-{last}: {arrow_message}", path=display)
