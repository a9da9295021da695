"""Tests for the Parquet and Arrow IPC readers."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from datakit.errors import InputError
from datakit.io import DataFile, read_table, scan


@pytest.fixture
def chat_table(chat_rows) -> pa.Table:
    return pa.Table.from_pylist(chat_rows)


def test_parquet_round_trip_and_batches(tmp_path, chat_table):
    path = tmp_path / "chat.parquet"
    pq.write_table(chat_table, path, row_group_size=4)
    batches = list(scan(path, batch_size=3))
    assert [b.batch.num_rows for b in batches] == [3, 3, 1]
    assert [b.first_row for b in batches] == [0, 3, 6]
    assert all(b.lines is None for b in batches)
    assert batches[2].row_number(0) == 7
    assert batches[1].row_numbers([0, 2]).tolist() == [4, 6]
    assert read_table(path).equals(chat_table)


def test_parquet_with_zero_rows_yields_nothing(tmp_path, chat_table):
    path = tmp_path / "empty.pq"
    pq.write_table(chat_table.slice(0, 0), path)
    assert list(scan(path)) == []


def test_corrupt_parquet(tmp_path, chat_table):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(InputError) as info:
        list(scan(path))
    assert info.value.message.startswith("not a readable Parquet file: ")
    assert "\n" not in info.value.message
    assert info.value.path == str(path)


def test_truncated_parquet(tmp_path, chat_table):
    good = tmp_path / "good.parquet"
    pq.write_table(chat_table, good)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(InputError, match="not a readable Parquet file"):
        list(scan(cut))


@pytest.mark.parametrize("name", ["chat.arrow", "chat.feather", "chat.ipc"])
def test_arrow_file_format(tmp_path, chat_table, name):
    path = tmp_path / name
    feather.write_feather(chat_table, path, compression="uncompressed", chunksize=5)
    batches = list(scan(path, batch_size=2))
    assert [b.batch.num_rows for b in batches] == [2, 2, 1, 2]
    assert [b.first_row for b in batches] == [0, 2, 4, 5]
    assert read_table(path).equals(chat_table)


def test_arrow_stream_format(tmp_path, chat_table):
    path = tmp_path / "stream.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, chat_table.schema) as writer:
        for batch in chat_table.to_batches(max_chunksize=3):
            writer.write_batch(batch)
    batches = list(scan(path))
    assert [b.first_row for b in batches] == [0, 3, 6]
    assert read_table(path).equals(chat_table)


def test_corrupt_arrow(tmp_path):
    path = tmp_path / "bad.arrow"
    path.write_bytes(b"definitely not arrow data, neither file nor stream")
    with pytest.raises(InputError) as info:
        list(scan(path))
    assert info.value.message.startswith("not a readable Arrow IPC file: ")


def test_files_of_a_folder_are_read_in_order(tmp_path, chat_table, write_jsonl, chat_rows):
    pq.write_table(chat_table.slice(0, 3), tmp_path / "a.parquet")
    write_jsonl("b.jsonl", chat_rows[3:])
    batches = list(scan(tmp_path))
    assert [b.path for b in batches] == [str(tmp_path / "a.parquet"), str(tmp_path / "b.jsonl")]
    assert batches[1].row_number(0) == 1
    assert read_table(tmp_path).to_pylist() == chat_rows


@pytest.mark.parametrize("fmt", ["parquet", "arrow-file", "arrow-stream"])
def test_columnar_files_read_through_an_opener(tmp_path, chat_table, fmt):
    path = tmp_path / "remote"
    if fmt == "parquet":
        pq.write_table(chat_table, path)
    elif fmt == "arrow-file":
        feather.write_feather(chat_table, path)
    else:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, chat_table.schema) as writer:
            writer.write_table(chat_table)
    remote = DataFile("hf://datasets/org/name/remote", fmt.split("-")[0], opener=lambda: open(path, "rb"))
    batches = list(scan(remote, batch_size=4))
    assert [b.path for b in batches] == [remote.path, remote.path]
    assert pa.Table.from_batches([b.batch for b in batches]).equals(chat_table)
