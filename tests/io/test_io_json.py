"""Tests for the JSON Lines and JSON readers: round trips, line numbers and precise errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datakit.errors import DataError, InputError
from datakit.io import (
    DataFile,
    SourceBatch,
    list_data_files,
    read_batches,
    read_table,
    scan,
)
from datakit.io.json_file import scan_json
from datakit.io.jsonl import scan_jsonl


def _file(path) -> DataFile:
    return list_data_files(path).files[0]


def _scan_small(path, batch_size=1000, chunk_bytes=32) -> list[SourceBatch]:
    """Read with a tiny chunk size so that chunk boundaries fall inside the test data."""
    file = _file(path)
    reader = scan_json if file.format == "json" else scan_jsonl
    return list(reader(file, batch_size, chunk_bytes=chunk_bytes))


def _lines(batches: list[SourceBatch]) -> list[int]:
    return [int(n) for b in batches for n in b.lines]


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_jsonl_round_trip_keeps_nested_messages(write_jsonl, chat_rows, compression):
    suffix = {None: "", "gzip": ".gz", "zstd": ".zst"}[compression]
    path = write_jsonl(f"chat.jsonl{suffix}", chat_rows, compression)
    table = read_table(path)
    assert table.to_pylist() == chat_rows
    assert table.column_names == ["id", "messages", "score", "ok"]
    assert str(table.schema.field("messages").type) == "list<item: struct<role: string, content: string>>"


def test_jsonl_batch_size_and_row_numbers(write_jsonl, chat_rows):
    path = write_jsonl("chat.jsonl", chat_rows)
    batches = list(scan(path, batch_size=3))
    assert [b.batch.num_rows for b in batches] == [3, 3, 1]
    assert [b.first_row for b in batches] == [0, 3, 6]
    assert all(b.path == str(path) for b in batches)
    assert _lines(batches) == [1, 2, 3, 4, 5, 6, 7]
    assert batches[1].row_number(2) == 6
    assert batches[1].row_numbers(np.array([0, 2])).tolist() == [4, 6]
    assert batches[1].lines.dtype == np.int64


def test_line_numbers_skip_blank_lines_and_crlf(write_bytes):
    data = b'\n{"a": 1}\r\n   \r\n\t\n{"a": 2}\r\n\n\n{"a": 3}\n  {"a": 4}\n\n'
    path = write_bytes("blank.jsonl", data)
    for chunk_bytes in (1, 7, 16, 1 << 20):
        batches = _scan_small(path, chunk_bytes=chunk_bytes)
        assert [r["a"] for b in batches for r in b.batch.to_pylist()] == [1, 2, 3, 4]
        assert _lines(batches) == [2, 5, 8, 9]


def test_last_line_without_newline_is_a_row(write_bytes):
    path = write_bytes("t.jsonl", b'{"a": 1}\n{"a": 2}')
    for chunk_bytes in (3, 1 << 20):
        batches = _scan_small(path, chunk_bytes=chunk_bytes)
        assert _lines(batches) == [1, 2]


def test_chunk_boundaries_keep_rows_and_lines(write_jsonl):
    rows = [{"i": i, "text": "x" * (i % 13)} for i in range(300)]
    path = write_jsonl("rows.jsonl", rows)
    batches = _scan_small(path, batch_size=7, chunk_bytes=50)
    assert [r for b in batches for r in b.batch.to_pylist()] == rows
    assert _lines(batches) == list(range(1, 301))
    assert max(b.batch.num_rows for b in batches) <= 7
    assert [b.first_row for b in batches] == list(np.cumsum([0] + [b.batch.num_rows for b in batches[:-1]]))


def test_line_longer_than_chunk_and_block(write_bytes, monkeypatch):
    import datakit.io.jsonl as jsonl

    # Blocks smaller than the longest line used to make Arrow fail; the block grows to fit.
    monkeypatch.setattr(jsonl, "MIN_BLOCK_BYTES", 64)
    long_text = "y" * 5000
    path = write_bytes("long.jsonl", ('{"t": "a"}\n{"t": "%s"}\n{"t": "b"}\n' % long_text).encode())
    batches = _scan_small(path, chunk_bytes=100)
    assert [r["t"] for b in batches for r in b.batch.to_pylist()] == ["a", long_text, "b"]
    assert _lines(batches) == [1, 2, 3]


def test_date_like_strings_stay_strings(write_jsonl):
    rows = [{"created": "2024-01-31", "meta": {"at": "2024-01-31T10:00:00", "tags": ["2020-01-01"]}}]
    assert read_table(write_jsonl("dates.jsonl", rows)).to_pylist() == rows


def test_only_blank_lines_yields_nothing(write_bytes):
    path = write_bytes("blank.jsonl", b"\n \n\r\n")
    assert list(scan(path)) == []


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json", "empty.parquet", "empty.arrow", "empty.jsonl.gz"])
def test_zero_byte_file_is_an_error(write_bytes, name):
    path = write_bytes(name, b"")
    with pytest.raises(InputError) as info:
        list(scan(path))
    assert (info.value.message, info.value.path) == ("file is empty", str(path))


def test_compressed_file_with_empty_content(write_bytes):
    path = write_bytes("empty.jsonl.gz", b"", "gzip")
    with pytest.raises(InputError, match="file is empty"):
        list(scan(path))


def test_corrupt_gzip(write_bytes):
    path = write_bytes("bad.jsonl.gz", b"\x1f\x8b\x08\x00this is not gzip data at all")
    with pytest.raises(InputError) as info:
        list(scan(path))
    assert info.value.message.startswith("not a readable gzip file: ")


def _error(path, chunk_bytes=1 << 20, cls=InputError):
    with pytest.raises(cls) as info:
        _scan_small(path, chunk_bytes=chunk_bytes)
    assert type(info.value) is cls
    return info.value


@pytest.mark.parametrize("chunk_bytes", [8, 1 << 20])
def test_truncated_last_line(write_bytes, chunk_bytes):
    path = write_bytes("cut.jsonl", b'{"a": 1}\n\n{"a": 2}\n{"a": "unfinish')
    err = _error(path, chunk_bytes)
    assert err.row == 4
    assert err.message == "invalid JSON: Unterminated string starting at (column 7); the file looks truncated"
    assert str(err) == f"{path}:4: {err.message}"


def test_invalid_json_in_the_middle(write_bytes):
    path = write_bytes("bad.jsonl", b'{"a": 1}\n{"a": 2,}\n{"a": 3}\n')
    err = _error(path)
    assert (err.row, err.message) == (2, "invalid JSON: Expecting property name enclosed in double quotes (column 9)")


@pytest.mark.parametrize("chunk_bytes", [16, 1 << 20])
def test_invalid_utf8_in_the_middle(write_bytes, chunk_bytes):
    path = write_bytes("bad.jsonl", '{"a": "ok"}\n{"a": "é"}\n{"a": "ab'.encode() + b"\xff" + b'"}\n{"a": "z"}\n')
    err = _error(path, chunk_bytes)
    assert (err.row, err.message) == (3, "invalid UTF-8 (byte 0xff at column 10)")


@pytest.mark.parametrize(("line", "kind"), [(b"[1, 2]", "array"), (b"42", "number"), (b'"text"', "string"),
                                            (b"null", "null")])
def test_line_that_is_not_an_object(write_bytes, line, kind):
    path = write_bytes("bad.jsonl", b'{"a": 1}\n' + line + b'\n{"a": 3}\n')
    err = _error(path)
    assert (err.row, err.message) == (2, f"expected a JSON object, found {kind}")


def test_two_objects_on_one_line(write_bytes):
    # Arrow would read these as two rows and break the row-to-line mapping; it must be an error.
    path = write_bytes("two.jsonl", b'{"a": 1}\n\n{"a": 2} {"a": 3}\n')
    err = _error(path)
    assert (err.row, err.message) == (3, "invalid JSON: Extra data (column 10)")


def test_duplicate_key(write_bytes):
    path = write_bytes("dup.jsonl", b'{"a": 1}\n{"a": 1, "a": 2}\n')
    err = _error(path)
    assert (err.row, err.message) == (2, "duplicate key 'a'")


def test_type_conflict_top_level(write_bytes):
    path = write_bytes("c.jsonl", b'{"label": true}\n{"label": null}\n{"label": "yes"}\n')
    err = _error(path, cls=DataError)
    assert (err.row, err.field, err.message) == (3, "label", "found string where earlier rows have boolean")
    assert str(err) == f"{path}:3: label: found string where earlier rows have boolean"


def test_type_conflict_in_nested_list(write_bytes):
    rows = [
        {"prompt": [{"role": "user", "content": "hi"}]},
        {"prompt": []},
        {"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ["x"]}]},
    ]
    path = write_bytes("c.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    err = _error(path, cls=DataError)
    assert (err.row, err.field, err.message) == (3, "prompt[].content", "found array where earlier rows have string")


def test_type_conflict_in_nested_object(write_bytes):
    path = write_bytes("c.jsonl", b'{"metadata": {"score": 1}}\n{"metadata": {"score": 2.5}}\n{"metadata": {"score": "high"}}\n')
    err = _error(path, cls=DataError)
    assert (err.row, err.field, err.message) == (3, "metadata.score", "found string where earlier rows have number")


def test_type_conflict_across_chunks(write_bytes):
    # Each chunk parses on its own; the conflict only shows when chunks are compared.
    path = write_bytes("c.jsonl", b'{"label": true}\n' * 5 + b'{"label": "no"}\n')
    err = _error(path, chunk_bytes=40, cls=DataError)
    assert (err.row, err.field, err.message) == (6, "label", "found string where earlier rows have boolean")


def test_new_optional_field_in_later_chunk_is_fine(write_bytes):
    path = write_bytes("c.jsonl", b'{"a": 1}\n{"a": 2}\n{"a": 3, "b": "new"}\n')
    batches = _scan_small(path, chunk_bytes=10)
    assert [b.batch.schema.names for b in batches] == [["a"], ["a"], ["a", "b"]]
    assert read_table(path).to_pylist() == [{"a": 1, "b": None}, {"a": 2, "b": None}, {"a": 3, "b": "new"}]


def test_json_array_round_trip(write_bytes, chat_rows):
    path = write_bytes("chat.json", json.dumps(chat_rows, indent=2).encode())
    batches = list(scan(path, batch_size=4))
    assert [r for b in batches for r in b.batch.to_pylist()] == chat_rows
    assert [b.first_row for b in batches] == [0, 4]
    assert batches[0].lines is None
    assert batches[1].row_number(1) == 6


def test_json_array_mixed_int_float_and_missing_keys(write_bytes):
    path = write_bytes("a.json", b'[{"a": 1}, {"a": 2.5, "b": "x"}]')
    assert read_table(path).to_pylist() == [{"a": 1.0, "b": None}, {"a": 2.5, "b": "x"}]


def test_json_lines_in_a_json_file(write_bytes):
    path = write_bytes("lines.json", b'\n{"a": 1}\n{"a": 2}\n')
    batches = list(scan(path))
    assert _lines(batches) == [2, 3]
    assert read_table(path).to_pylist() == [{"a": 1}, {"a": 2}]


def test_json_lines_in_json_file_small_chunks(write_jsonl):
    rows = [{"i": i} for i in range(50)]
    path = write_jsonl("lines.json", rows)
    batches = _scan_small(path, chunk_bytes=16)
    assert _lines(batches) == list(range(1, 51))


def test_compressed_json_array(write_bytes, chat_rows):
    path = write_bytes("chat.json.zst", json.dumps(chat_rows).encode(), "zstd")
    assert read_table(path).to_pylist() == chat_rows


def test_empty_json_array_yields_nothing(write_bytes):
    assert list(scan(write_bytes("e.json", b" [ ] "))) == []


def test_json_array_invalid_json(write_bytes):
    path = write_bytes("bad.json", b'[\n  {"a": 1},\n  {"a": }\n]')
    err = _error(path)
    assert (err.row, err.message) == (3, "invalid JSON: Expecting value (line 3, column 9)")


def test_json_array_truncated(write_bytes):
    err = _error(write_bytes("cut.json", b'[{"a": 1}, {"a": 2'))
    assert err.message == "invalid JSON: Expecting ',' delimiter (line 1, column 19); the file looks truncated"


def test_json_array_element_not_an_object(write_bytes):
    err = _error(write_bytes("bad.json", b'[{"a": 1}, {"a": 2}, [3]]'))
    assert (err.row, err.message) == (3, "expected a JSON object at element 3, found array")
    err = _error(write_bytes("null.json", b'[{"a": 1}, null]'))
    assert (err.row, err.message) == (2, "expected a JSON object at element 2, found null")


def test_json_array_type_conflict(write_bytes):
    path = write_bytes("c.json", b'[{"m": {"ok": true}}, {"m": {"ok": false}}, {"m": {"ok": "maybe"}}]')
    err = _error(path, cls=DataError)
    assert (err.row, err.field, err.message) == (3, "m.ok", "found string where earlier rows have boolean")


def test_pretty_printed_object_in_json_file_gets_a_hint(write_bytes):
    err = _error(write_bytes("obj.json", b'{\n  "a": 1\n}\n'))
    assert err.row == 1
    assert "read as JSON Lines" in err.message


def test_large_jsonl_streams_with_exact_counts_and_lines(write_bytes):
    n = 200_000
    ids = np.arange(n)
    # Every 1000th line is blank, so line numbers and row indexes drift apart.
    lines = [f'{{"id": {i}, "text": "row {i}"}}\n' for i in range(n)]
    for i in range(0, n, 1000):
        lines[i] = "\n" + lines[i]
    path = write_bytes("big.jsonl", "".join(lines).encode())
    seen_ids, seen_lines = [], []
    for batch in scan_jsonl(_file(path), 10_000, chunk_bytes=256 * 1024):
        assert batch.batch.num_rows <= 10_000
        seen_ids.append(batch.batch.column("id").to_numpy())
        seen_lines.append(batch.lines)
    assert np.array_equal(np.concatenate(seen_ids), ids)
    expected_lines = ids + 1 + (ids // 1000 + 1)
    assert np.array_equal(np.concatenate(seen_lines), expected_lines)


def test_read_batches_gives_plain_record_batches(write_jsonl, chat_rows):
    batches = list(read_batches(write_jsonl("c.jsonl", chat_rows), batch_size=5))
    assert [b.num_rows for b in batches] == [5, 2]


@pytest.mark.parametrize(("fmt", "compression", "data"), [
    ("jsonl", None, b'{"a": 1}\n\n{"a": 2}\n'),
    ("jsonl", "gzip", None),
    ("json", None, b'[{"a": 1}, {"a": 2}]'),
    ("json", None, b'{"a": 1}\n{"a": 2}\n'),
])
def test_text_files_read_through_an_opener(fmt, compression, data):
    import gzip
    import io

    payload = gzip.compress(b'{"a": 1}\n{"a": 2}\n') if compression else data
    remote = DataFile("hf://datasets/org/name/x", fmt, compression, opener=lambda: io.BytesIO(payload))
    assert read_table(remote).to_pylist() == [{"a": 1}, {"a": 2}]


def test_utf8_bom_at_start(write_bytes):
    path = write_bytes("bom.jsonl", b'\xef\xbb\xbf{"a": 1}\n{"a": 2}\n')
    batches = list(scan(path))
    assert _lines(batches) == [1, 2]
    assert read_table(write_bytes("bom.json", b'\xef\xbb\xbf[{"a": 1}]')).to_pylist() == [{"a": 1}]


def test_bom_line_with_error_is_still_diagnosed(write_bytes):
    err = _error(write_bytes("bom.jsonl", b'\xef\xbb\xbf{"a": 1}\n{"a": true}\n'), cls=DataError)
    assert (err.row, err.field) == (2, "a")


def test_json_array_integer_too_large(write_bytes):
    err = _error(write_bytes("big.json", b'[{"a": 1}, {"a": 123456789012345678901234567890}]'))
    assert err.message.startswith("could not load the array's elements: ")


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    layout=st.lists(st.tuples(st.sampled_from(["row", "blank", "spaces", "crlf-row"]), st.integers(0, 40)), max_size=40),
    chunk_bytes=st.integers(1, 120),
    batch_size=st.integers(1, 9),
    trailing_newline=st.booleans(),
)
def test_any_chunking_gives_the_same_rows_and_lines(tmp_path_factory, layout, chunk_bytes, batch_size, trailing_newline):
    text_lines, expected = [], []
    for kind, width in layout:
        if kind == "blank":
            text_lines.append("")
        elif kind == "spaces":
            text_lines.append(" " * width + "\t")
        else:
            row = {"n": len(expected), "s": "é" * width}
            expected.append((row, len(text_lines) + 1))
            text_lines.append(json.dumps(row, ensure_ascii=False) + ("\r" if kind == "crlf-row" else ""))
    data = "\n".join(text_lines) + ("\n" if trailing_newline and text_lines else "")
    path = tmp_path_factory.mktemp("prop") / "p.jsonl"
    path.write_bytes(data.encode())
    if not data:
        return
    batches = list(scan_jsonl(_file(path), batch_size, chunk_bytes=chunk_bytes))
    assert [r for b in batches for r in b.batch.to_pylist()] == [row for row, _ in expected]
    assert _lines(batches) == [line for _, line in expected]
    assert all(b.batch.num_rows <= batch_size for b in batches)
