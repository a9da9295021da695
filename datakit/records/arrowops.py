"""Vectorized helpers over Arrow arrays that the validator's checks are built from."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# First bytes of UTF-8 sequences that may encode whitespace (as Python's str.isspace sees it). A string whose
# first byte is not one of these holds a non-whitespace character; only the others need a closer look.
_MAY_BE_SPACE = np.zeros(256, dtype=bool)
_MAY_BE_SPACE[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0xC2, 0xE1, 0xE2, 0xE3]] = True

# One character that is not whitespace in Python's (Unicode) sense, in RE2 syntax; RE2's own \s is ASCII-only.
NON_SPACE_RE = (
    r"[^\t\n\x{0b}\x{0c}\r\x{1c}-\x{1f} \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
)


def to_bool(arr: pa.Array | pa.ChunkedArray, null_as: bool = False) -> np.ndarray:
    """A boolean Arrow array as a numpy bool array, nulls replaced by `null_as`."""
    if arr.null_count:
        arr = arr.fill_null(null_as)
    return arr.to_numpy(zero_copy_only=False)


def is_null(arr: pa.Array) -> np.ndarray | None:
    """Null positions as a numpy bool array, or None when the array has no nulls."""
    if arr.null_count == 0:
        return None
    if pa.types.is_null(arr.type):
        return np.ones(len(arr), dtype=bool)
    return to_bool(arr.is_null())


def list_lengths(arr: pa.Array) -> np.ndarray:
    """Lengths of a list array's entries as int64, nulls counted as 0 (matching `flatten()`)."""
    return pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def list_starts(lengths: np.ndarray) -> np.ndarray:
    """Where each entry's items start in the flattened child array."""
    ends = np.cumsum(lengths)
    return ends - lengths


def plain_strings(arr: pa.Array) -> pa.Array:
    """A string array in the offsets layout (`string` or `large_string`), casting views and dictionaries."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return arr
    if pa.types.is_dictionary(t):
        return plain_strings(arr.cast(t.value_type))
    return arr.cast(pa.large_string())


def string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data) of a string array as numpy views, already adjusted for the array's slice offset."""
    arr = plain_strings(arr)
    wide = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if wide else np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, dtype=np.uint8)
    return offsets, data


def enum_codes(arr: pa.Array, values: list[Any], memo: dict[Any, Any], key: tuple[Any, ...]) -> np.ndarray:
    """Index of each value in `values` (len(values) where absent or null), computed once per field and batch."""
    memo_key = (key, "enum", tuple(values))
    codes = memo.get(memo_key)
    if codes is None:
        try:
            value_set = pa.array(values, type=arr.type)
            codes = pc.index_in(arr, value_set=value_set).fill_null(len(values)).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            codes = np.full(len(arr), len(values), dtype=np.int32)
        memo[memo_key] = codes
    return codes


def non_blank(arr: pa.Array) -> np.ndarray:
    """True where a string holds at least one non-whitespace character (Python's `str.isspace` sense)."""
    arr = plain_strings(arr)
    offsets, data = string_parts(arr)
    lengths = np.diff(offsets)
    result = lengths > 0
    filled = np.flatnonzero(result)
    if not len(filled):
        return result
    doubtful = filled[_MAY_BE_SPACE[data[offsets[:-1][filled]]]]
    if len(doubtful):
        found = pc.match_substring_regex(arr.take(pa.array(doubtful)), NON_SPACE_RE)
        result[doubtful] = to_bool(found)
    return result


def elements_equal(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Position-wise deep equality of two aligned arrays (nulls equal nulls), as numpy bools."""
    n = len(a)
    a_null = is_null(a)
    b_null = is_null(b)
    both_null = a_null & b_null if a_null is not None and b_null is not None else np.zeros(n, dtype=bool)
    one_null = np.zeros(n, dtype=bool)
    if a_null is not None:
        one_null |= a_null
    if b_null is not None:
        one_null |= b_null
    one_null &= ~both_null
    ta, tb = a.type, b.type
    if pa.types.is_struct(ta) and pa.types.is_struct(tb):
        same = np.ones(n, dtype=bool)
        names = [f.name for f in ta] + [f.name for f in tb if ta.get_field_index(f.name) < 0]
        for name in names:
            ia, ib = ta.get_field_index(name), tb.get_field_index(name)
            if ia >= 0 and ib >= 0:
                same &= elements_equal(a.field(ia), b.field(ib))
            else:
                present = a.field(ia) if ia >= 0 else b.field(ib)
                missing_ok = is_null(present)
                same &= missing_ok if missing_ok is not None else np.zeros(n, dtype=bool)
    elif _is_list(ta) and _is_list(tb):
        same = _lists_equal(a, b)
    elif _is_list(ta) or _is_list(tb) or pa.types.is_struct(ta) or pa.types.is_struct(tb):
        same = np.zeros(n, dtype=bool)
    else:
        if ta != tb:
            try:
                b = b.cast(ta)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return both_null
        same = to_bool(pc.equal(a, b))
    return (same & ~one_null) | both_null


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _lists_equal(a: pa.Array, b: pa.Array) -> np.ndarray:
    la, lb = list_lengths(a), list_lengths(b)
    same_len = la == lb
    if not same_len.all():
        keep = np.flatnonzero(same_len)
        result = np.zeros(len(a), dtype=bool)
        if len(keep):
            result[keep] = _lists_equal(a.take(pa.array(keep)), b.take(pa.array(keep)))
        return result
    items_equal = elements_equal(a.flatten(), b.flatten())
    owners = np.repeat(np.arange(len(a)), la)
    differing = np.bincount(owners[~items_equal], minlength=len(a))
    return differing == 0
