"""publish / versions / pull / diff / card through the CLI and the Python API, on a local registry."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.hub.manifest import build_manifest, content_fingerprint, file_sha256, read_rows
from datakit.hub.pull import IntegrityError, as_dataset, as_lazyframe, pull, verify, versions
from datakit.hub.staging import write_shards
from tests.hub.conftest import cli


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_rows(folder: Path, table: pa.Table) -> Path:
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "rows.parquet")
    return folder


def test_publish_versions_pull_round_trip(demo_run, tmp_path, capsys):
    registry = tmp_path / "registry"
    code, out, err = cli(capsys, "publish", demo_run, "--repo", "acme/demo", "--version", "1.0.0",
                         "--registry", registry)
    assert (code, err) == (0, "")
    assert out.startswith("published acme/demo@1.0.0 (tag v1.0.0, 2 rows, revision ")

    code, out, _ = cli(capsys, "versions", "acme/demo", "--registry", registry, "--json")
    listed = json.loads(out)
    assert code == 0 and [(v["version"], v["tag"], v["rows"]) for v in listed] == [("1.0.0", "v1.0.0", 2)]
    code, out, _ = cli(capsys, "versions", "acme/demo", "--registry", registry)
    assert out.splitlines()[0].split() == ["VERSION", "ROWS", "CREATED", "REVISION"]
    assert out.splitlines()[1].split()[:2] == ["1.0.0", "2"]

    code, out, err = cli(capsys, "pull", "acme/demo@v1.0.0", "--to", tmp_path / "pulled", "--registry", registry)
    assert (code, err, out.strip()) == (0, "", str(tmp_path / "pulled"))
    pulled = tmp_path / "pulled"
    assert sorted(tree(pulled)) == ["README.md", "data/train-00000-of-00001.parquet", "datakit.json",
                                    "plots/funnel.png", "plots/lengths.png"]
    manifest = json.loads((pulled / "datakit.json").read_text())
    source = build_manifest(demo_run, "acme/demo", "1.0.0")
    assert manifest["fingerprint"] == source["fingerprint"]
    assert manifest["funnel"] == source["funnel"] and manifest["schema"] == "sft" and manifest["rows"] == 2
    assert manifest["files"][0]["path"] == "data/train-00000-of-00001.parquet" and manifest["files"][0]["rows"] == 2
    assert verify(pulled)["version"] == "1.0.0"
    # Pulling into the folder that already holds the version checks it again and reuses it.
    assert pull("acme/demo@1.0.0", to=pulled, registry=registry) == pulled


def test_existing_version_is_refused(demo_run, tmp_path, capsys):
    registry = tmp_path / "registry"
    assert cli(capsys, "publish", demo_run, "--repo", "acme/demo", "--version", "1.0.0", "--registry", registry)[0] == 0
    before = tree(registry / "acme" / "demo")
    code, out, err = cli(capsys, "publish", demo_run, "--repo", "acme/demo", "--version", "v1.0.0",
                         "--registry", registry)
    assert (code, out) == (2, "")
    assert "acme/demo@1.0.0 is already published" in err
    assert tree(registry / "acme" / "demo") == before


def test_bad_refs_are_usage_errors(tmp_path, capsys):
    for argv in (["pull", "acme/demo"], ["pull", "acme/demo@1.0"], ["diff", "acme/demo@1.0.0", "demo@2.0.0"]):
        code, out, err = cli(capsys, *argv, "--registry", tmp_path / "registry")
        assert code == 2 and out == ""
        assert "bad dataset reference" in err and "org/name@X.Y.Z" in err
    code, _, err = cli(capsys, "publish", tmp_path, "--repo", "acme/demo", "--version", "one")
    assert code == 2 and "X.Y.Z" in err
    code, _, err = cli(capsys, "pull", "acme/demo@1.0.0", "--registry", tmp_path / "registry", "--to", tmp_path / "x")
    assert code == 2 and "is not in the registry" in err


def test_pull_detects_a_tampered_file(demo_run, tmp_path, capsys):
    registry = tmp_path / "registry"
    assert cli(capsys, "publish", demo_run, "--repo", "acme/demo", "--version", "1.0.0", "--registry", registry)[0] == 0
    version = registry / "acme" / "demo" / "v1.0.0"
    shard = version / "data" / "train-00000-of-00001.parquet"
    table = pq.read_table(shard)
    ids = table.column("id").to_pylist()
    pq.write_table(table.set_column(0, "id", pa.array([ids[0], "sft-9999"])), shard)

    code, out, err = cli(capsys, "pull", "acme/demo@1.0.0", "--to", tmp_path / "pulled", "--registry", registry)
    assert (code, out) == (1, "")
    assert "data/train-00000-of-00001.parquet" in err and "differs from the one published" in err
    assert not (tmp_path / "pulled").exists() and list(tmp_path.glob(".pulled*")) == []

    # Even with the manifest's sha256 and size forged to match, the rows' fingerprint gives it away.
    manifest_path = version / "datakit.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][0].update(bytes=shard.stat().st_size, sha256=file_sha256(shard))
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="fingerprint"):
        pull("acme/demo@1.0.0", to=tmp_path / "pulled", registry=registry)


def test_invalid_rows_are_refused(tmp_path, capsys):
    rows = pa.Table.from_pylist([
        {"id": "a", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"id": "b", "messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]},
    ])
    folder = write_rows(tmp_path / "rows", rows)
    code, out, err = cli(capsys, "publish", folder, "--repo", "acme/bad", "--version", "1.0.0", "--schema", "sft",
                         "--registry", tmp_path / "registry")
    assert (code, out) == (2, "")
    assert "do not validate as sft" in err and ":2: messages[0].role" in err
    assert versions("acme/bad", registry=tmp_path / "registry") == []
    # Declaring no schema publishes the same rows as they are.
    code, _, _ = cli(capsys, "publish", folder, "--repo", "acme/bad", "--version", "1.0.0", "--schema", "none",
                     "--registry", tmp_path / "registry")
    assert code == 0


def test_diff_reports_columns_and_ids_exactly(tmp_path, capsys):
    registry = tmp_path / "registry"
    old = pa.table({"id": [f"a{i}" for i in range(10)], "text": [f"t{i}" for i in range(10)],
                    "n": list(range(10)), "lang": ["en"] * 10})
    new = pa.table({"id": [f"a{i}" for i in range(3, 10)] + ["b0", "b1"],
                    "text": [f"t{i}" for i in range(9)], "n": [str(i) for i in range(9)], "score": [0.5] * 9})
    for version, table in (("1.0.0", old), ("1.1.0", new)):
        folder = write_rows(tmp_path / version, table)
        assert cli(capsys, "publish", folder, "--repo", "acme/d", "--version", version, "--schema", "none",
                   "--registry", registry)[0] == 0
    code, out, _ = cli(capsys, "diff", "acme/d@1.0.0", "acme/d@v1.1.0", "--registry", registry, "--json",
                       "--examples", "2")
    assert code == 0
    assert json.loads(out) == {
        "a": "acme/d@1.0.0", "b": "acme/d@v1.1.0", "rows": {"a": 10, "b": 9}, "same_rows": False,
        "columns": {"added": [{"name": "score", "type": "double"}], "removed": [{"name": "lang", "type": "string"}],
                    "retyped": [{"name": "n", "a": "int64", "b": "string"}]},
        "ids": {"added": 2, "removed": 3, "added_examples": ["b0", "b1"], "removed_examples": ["a0", "a1"]},
    }
    code, out, _ = cli(capsys, "diff", "acme/d@1.0.0", "acme/d@1.1.0", "--registry", registry)
    assert "column retyped: n: int64 -> string" in out and "ids removed: 3 (e.g. a0, a1, a2)" in out
    assert "rows: 10 -> 9 (-1)" in out


def test_python_api_gives_dataset_and_lazyframe(demo_run, tmp_path):
    from datakit.hub.publish import publish

    registry = tmp_path / "registry"
    info = publish(demo_run, "acme/demo", "2.0.0", registry=registry)
    assert info.tag == "v2.0.0" and [v.version for v in versions("acme/demo", registry=registry)] == ["2.0.0"]
    path = pull("acme/demo@2.0.0", to=tmp_path / "pulled", registry=registry)
    dataset = as_dataset(path, cache_dir=tmp_path / "hf-cache")
    assert dataset.num_rows == 2 and dataset.column_names == ["id", "messages"]
    assert dataset[0]["id"] == "sft-0001" and dataset[0]["messages"][0]["role"] == "system"
    frame = as_lazyframe(path)
    assert isinstance(frame, pl.LazyFrame)
    assert frame.select(pl.len()).collect().item() == 2
    assert frame.collect().get_column("id").to_list() == ["sft-0001", "sft-0004"]


def test_card_stages_without_publishing(demo_run, tmp_path, capsys):
    code, out, err = cli(capsys, "card", demo_run, "--out", tmp_path / "card")
    assert code == 0 and "staged 2 rows in 1 shard(s)" in out
    assert (tmp_path / "card" / "README.md").read_text().strip()
    assert json.loads((tmp_path / "card" / "datakit.json").read_text())["repo"] == "local/preview"
    code, _, err = cli(capsys, "card", demo_run, "--out", tmp_path / "card")
    assert code == 2 and "must be new or empty" in err


def test_shards_are_recut_keeping_rows_and_fingerprint(tmp_path):
    rows = pa.table({"id": [f"r{i:04d}" for i in range(2_000)], "text": [f"text {i} " * 20 for i in range(2_000)]})
    source = tmp_path / "src"
    source.mkdir()
    for i in range(4):  # four uneven files
        pq.write_table(rows.slice(i * 300, 300 if i < 3 else 1_100), source / f"part-{i}.parquet")
    files = sorted(source.glob("*.parquet"))
    shards = write_shards(files, tmp_path / "data", shard_bytes=8_000, row_group_rows=256)
    assert len(shards) > 1
    assert [p.name for p in shards] == [f"train-{i:05d}-of-{len(shards):05d}.parquet" for i in range(len(shards))]
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in shards) == 2_000
    assert all(pq.ParquetFile(p).metadata.row_group(g).num_rows <= 256
               for p in shards for g in range(pq.ParquetFile(p).metadata.num_row_groups))
    assert content_fingerprint(read_rows(shards)[1]) == content_fingerprint([rows])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(p.name for p in shards)
