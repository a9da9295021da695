"""Reader for `.json` files: a top-level array of objects (loaded whole) or JSON Lines (streamed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import NoReturn

import numpy as np
import pyarrow as pa

from datakit.errors import DataError, InputError
from datakit.io._common import short_message, slices
from datakit.io.batch import SourceBatch
from datakit.io.json_kinds import KindTracker, conflict_message, json_kind
from datakit.io.jsonl import JSONL_CHUNK_BYTES, open_text, read_piece, scan_jsonl
from datakit.io.sources import DataFile

# How far into a file to look for its first non-blank byte.
_PEEK_BYTES = 64 * 1024
_JSONL_HINT = " (a .json file that does not start with '[' is read as JSON Lines, one object per line)"


def scan_json(file: DataFile, batch_size: int, *, chunk_bytes: int | None = None) -> Iterator[SourceBatch]:
    """Stream a `.json` file's rows in batches of at most `batch_size`.

    A file whose first non-blank character is `[` is an array of objects and is loaded whole with
    the standard `json` module (arrays cannot be streamed by Arrow); anything else is read as
    JSON Lines, which streams.
    """
    stream = open_text(file)
    head = b""
    while True:
        piece = read_piece(stream, _PEEK_BYTES, file)
        head += piece
        first = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")[:1]
        if first or not piece:
            break
    if first != b"[":
        yield from scan_jsonl(
            file, batch_size, chunk_bytes=chunk_bytes or JSONL_CHUNK_BYTES, stream=stream, head=head, hint=_JSONL_HINT
        )
        return
    with stream:
        rest = [head]
        while piece := read_piece(stream, JSONL_CHUNK_BYTES, file):
            rest.append(piece)
    yield from _array_batches(b"".join(rest), file.path, batch_size)


def _array_batches(data: bytes, display: str, batch_size: int) -> Iterator[SourceBatch]:
    items = _load_array(data, display)
    if not items:
        return
    try:
        array = pa.array(items)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        _diagnose(items, display, short_message(exc))
    if not pa.types.is_struct(array.type):
        _diagnose(items, display, f"elements load as {array.type}, not as objects")
    if array.null_count:
        first_null = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        element = first_null + 1
        raise InputError(f"expected a JSON object at element {element}, found null", path=display, row=element)
    batch = pa.RecordBatch.from_struct_array(array)
    for offset, part in slices(batch, batch_size):
        yield SourceBatch(part, display, offset)


def _load_array(data: bytes, display: str) -> list:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8-sig")) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"invalid UTF-8 (byte 0x{data[exc.start]:02x} at line {line}, column {column})", path=display, row=line
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        if exc.pos >= len(text.rstrip()):
            message += "; the file looks truncated"
        raise InputError(message, path=display, row=exc.lineno) from None
    except RecursionError:
        raise InputError("invalid JSON: nested too deeply", path=display) from None


def _diagnose(items: list, display: str, arrow_message: str) -> NoReturn:
    """Name the first element that is not an object or whose types clash with earlier elements."""
    kinds = KindTracker()
    for index, value in enumerate(items):
        element = index + 1
        if not isinstance(value, dict):
            raise InputError(
                f"expected a JSON object at element {element}, found {json_kind(value)}", path=display, row=element
            )
        conflict = kinds.check(value, element)
        if conflict:
            field, found, expected, first_seen = conflict
            raise DataError(
                conflict_message(found, expected, first_seen, element), path=display, row=element, field=field
            )
    raise InputError(f"could not load the array's elements: {arrow_message}", path=display)
