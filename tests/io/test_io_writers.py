"""Tests for the atomic writers: atomic_write, ShardWriter and write_parquet_dataset."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.errors import DataError, InputError, UsageError
from datakit.io import ShardWriter, atomic_write, read_table, write_parquet_dataset


class Boom(RuntimeError):
    pass


def _table(n: int, start: int = 0) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({"id": ids, "text": [f"row {i}" for i in ids]})


def test_atomic_write_binary_and_text(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_write(target) as handle:
        handle.write(b"hello")
        assert not target.exists()
    assert target.read_bytes() == b"hello"
    with atomic_write(target, "w") as handle:
        handle.write("héllo")
    assert target.read_text(encoding="utf-8") == "héllo"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_temp_file_is_hidden_and_in_the_same_folder(tmp_path):
    with atomic_write(tmp_path / "x.json", "w"):
        names = os.listdir(tmp_path)
        assert len(names) == 1 and names[0].startswith(".x.json.") and names[0].endswith(".tmp")


def test_atomic_write_leaves_nothing_on_exception(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(Boom), atomic_write(target, "w") as handle:
        handle.write("partial")
        raise Boom
    assert os.listdir(tmp_path) == []


def test_atomic_write_keeps_old_content_on_exception(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(Boom), atomic_write(target, "w") as handle:
        handle.write("new")
        raise Boom
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_write_rejects_append(tmp_path):
    with pytest.raises(UsageError), atomic_write(tmp_path / "x", "ab"):
        pass


def test_shard_writer_sizes_names_and_no_temp_files(tmp_path):
    out = tmp_path / "shards"
    with ShardWriter(out, max_rows_per_shard=4, prefix="train") as writer:
        writer.write(_table(3))
        writer.write(_table(6, start=3).to_batches()[0])
        writer.write(_table(1, start=9))
    paths = writer.close()
    assert [p.name for p in paths] == ["train-00000.parquet", "train-00001.parquet", "train-00002.parquet"]
    assert [pq.ParquetFile(p).metadata.num_rows for p in paths] == [4, 4, 2]
    assert sorted(os.listdir(out)) == [p.name for p in paths]
    assert read_table(out).column("id").to_pylist() == list(range(10))
    assert pq.ParquetFile(paths[0]).metadata.row_group(0).column(0).compression == "ZSTD"


def test_shard_writer_exact_multiple_makes_no_empty_extra_shard(tmp_path):
    with ShardWriter(tmp_path, max_rows_per_shard=5) as writer:
        writer.write(_table(10))
    assert [p.name for p in writer.close()] == ["part-00000.parquet", "part-00001.parquet"]


def test_shard_writer_gathers_small_batches_into_row_groups(tmp_path):
    with ShardWriter(tmp_path) as writer:
        for start in range(0, 1000, 10):
            writer.write(_table(10, start=start))
    (path,) = writer.close()
    assert pq.ParquetFile(path).metadata.num_row_groups == 1


def test_shard_writer_casts_and_reorders_to_schema(tmp_path):
    schema = pa.schema([("text", pa.string()), ("id", pa.int64())])
    with ShardWriter(tmp_path, schema=schema) as writer:
        writer.write(pa.table({"id": pa.array([1, 2], pa.int32()), "text": ["a", "b"]}))
    (path,) = writer.close()
    assert pq.read_schema(path).remove_metadata() == schema
    assert pq.read_table(path).to_pylist() == [{"text": "a", "id": 1}, {"text": "b", "id": 2}]


def test_shard_writer_names_the_column_that_does_not_fit(tmp_path):
    with ShardWriter(tmp_path) as writer:
        writer.write(_table(2))
        with pytest.raises(DataError) as info:
            writer.write(pa.table({"id": ["not a number"], "text": ["x"]}))
        assert info.value.field == "id"
        assert info.value.message.startswith("cannot convert string to int64")
        with pytest.raises(DataError) as info:
            writer.write(pa.table({"id": [1]}))
        assert (info.value.field, info.value.message) == ("text", "column is missing from a batch written here")
        with pytest.raises(DataError) as info:
            writer.write(pa.table({"id": [1], "text": ["x"], "extra": [True]}))
        assert info.value.field == "extra"


def test_shard_writer_empty_input(tmp_path):
    schema = pa.schema([("id", pa.int64())])
    with ShardWriter(tmp_path / "a", schema=schema) as writer:
        pass
    (path,) = writer.close()
    assert pq.read_table(path).num_rows == 0
    assert pq.read_schema(path).remove_metadata() == schema
    with ShardWriter(tmp_path / "b") as writer:
        pass
    assert writer.close() == []
    assert os.listdir(tmp_path / "b") == []


def test_shard_writer_on_exception_keeps_whole_shards_only(tmp_path):
    with pytest.raises(Boom), ShardWriter(tmp_path, max_rows_per_shard=4) as writer:
        writer.write(_table(6))
        raise Boom
    assert os.listdir(tmp_path) == ["part-00000.parquet"]
    assert pq.read_table(tmp_path / "part-00000.parquet").num_rows == 4


def test_write_parquet_dataset(tmp_path):
    out = tmp_path / "nested" / "ds"
    paths = write_parquet_dataset(_table(25).to_batches(max_chunksize=7), out, max_rows_per_shard=10)
    assert paths == [out / "part-00000.parquet", out / "part-00001.parquet", out / "part-00002.parquet"]
    assert read_table(out).column("id").to_pylist() == list(range(25))
    assert os.listdir(out.parent) == ["ds"]


def test_write_parquet_dataset_refuses_non_empty_folder(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError) as info:
        write_parquet_dataset([_table(1)], out)
    assert info.value.path == str(out)
    assert "overwrite=True" in info.value.message
    assert os.listdir(out) == ["keep.txt"]
    assert os.listdir(tmp_path) == ["ds"]


def test_write_parquet_dataset_into_empty_folder(tmp_path):
    (tmp_path / "ds").mkdir()
    write_parquet_dataset([_table(2)], tmp_path / "ds")
    assert os.listdir(tmp_path / "ds") == ["part-00000.parquet"]


def test_write_parquet_dataset_overwrite_replaces_old(tmp_path):
    out = tmp_path / "ds"
    write_parquet_dataset([_table(5)], out, max_rows_per_shard=2)
    write_parquet_dataset([_table(1, start=100)], out, overwrite=True)
    assert sorted(os.listdir(out)) == ["part-00000.parquet"]
    assert read_table(out).column("id").to_pylist() == [100]
    assert os.listdir(tmp_path) == ["ds"]


def test_write_parquet_dataset_leaves_no_trace_on_exception(tmp_path):
    def batches():
        yield _table(5)
        raise Boom

    with pytest.raises(Boom):
        write_parquet_dataset(batches(), tmp_path / "ds", max_rows_per_shard=2)
    assert os.listdir(tmp_path) == []


def test_write_parquet_dataset_failed_overwrite_keeps_old(tmp_path):
    out = tmp_path / "ds"
    write_parquet_dataset([_table(3)], out)

    def batches():
        yield _table(1)
        raise Boom

    with pytest.raises(Boom):
        write_parquet_dataset(batches(), out, overwrite=True)
    assert read_table(out).column("id").to_pylist() == [0, 1, 2]
    assert os.listdir(tmp_path) == ["ds"]
