"""The manifest of a real run, and a content fingerprint that follows the rows, not the files."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.errors import RunStateError, UsageError
from datakit.hub.manifest import FORMAT, build_manifest, content_fingerprint, read_rows
from tests.conftest import write_jsonl
from tests.hub.conftest import run_demo

ROWS = [{"id": f"r{i}", "text": f"row number {i}", "score": i / 4, "tags": ["a", "b"][: i % 3],
         "meta": {"step": "gen", "n": i}} for i in range(10)]


def write_parquet_parts(folder: Path, rows: list[dict], cuts: list[int], row_group_size: int = 1_000) -> Path:
    """Write `rows` as Parquet files split at the positions in `cuts`."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [0, *cuts, len(rows)]
    for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
        pq.write_table(pa.Table.from_pylist(rows[start:end]), folder / f"part-{i:05d}.parquet",
                       row_group_size=row_group_size)
    return folder


def fingerprint_of(path: Path) -> str:
    return content_fingerprint(read_rows(sorted(path.glob("*.parquet")) if path.is_dir() else [path])[1])


def test_manifest_of_a_run(demo_run):
    manifest = build_manifest(demo_run, "acme/demo", "v1.0.0")
    assert manifest["format"] == FORMAT and manifest["repo"] == "acme/demo" and manifest["version"] == "1.0.0"
    assert manifest["schema"] == "sft"  # declared by the recipe's write step
    assert manifest["rows"] == 2
    assert manifest["splits"] == {"train": {"rows": 2, "files": ["part-00000.parquet", "part-00001.parquet"]}}
    assert [f["path"] for f in manifest["files"]] == ["part-00000.parquet", "part-00001.parquet"]
    assert manifest["fingerprint"].startswith("sha256:") and len(manifest["fingerprint"]) == 7 + 64
    assert manifest["source"]["kind"] == "run" and manifest["source"]["name"] == "demo"
    assert manifest["source"]["seed"] == 0 and manifest["source"]["output"] == "save"
    recipe = manifest["source"]["recipe"]
    assert "uses: dedup" in recipe and "reason: too_long" in recipe
    assert "output:" not in recipe  # the run directory is machine-local and not part of the recipe
    funnel = {step["step"]: step for step in manifest["funnel"]}
    assert list(funnel) == ["load", "count_turns", "short", "unique", "tidy", "save"]
    assert funnel["load"] == {"step": "load", "uses": "read", "in": 4, "out": 4, "dropped": {}, "failed": 0}
    assert funnel["short"]["dropped"] == {"too_long": 2} and funnel["short"]["out"] == 2
    assert funnel["save"]["out"] == 2
    assert manifest["models"] == []
    for name in ("datakit", "pyarrow", "polars", "datasets", "huggingface_hub"):
        assert manifest["packages"][name] == importlib.metadata.version(name)
    assert set(manifest["features"]) == {"id", "messages"}
    assert manifest["features"]["id"] == {"dtype": "string", "_type": "Value"}
    assert manifest["features"]["messages"]["_type"] == "List"
    assert manifest["created"].endswith("Z")
    json.dumps(manifest)  # plain JSON through and through


def test_seed_and_models_come_from_the_run(demo_run, tmp_path):
    seeded = run_demo(tmp_path / "seeded", "seed=7")
    assert build_manifest(seeded, "acme/demo", "1.0.0")["source"]["seed"] == 7
    # A run whose recipe names models (here added to a copy of the demo's run.json) lists them with revisions.
    copy = Path(shutil.copytree(demo_run, tmp_path / "copy"))
    record = json.loads((copy / "run.json").read_text())
    record["document"]["models"] = {"policy": {"path": "org/policy", "engine": "vllm", "revision": "abc123"},
                                    "reward": {"path": "org/reward"}}
    (copy / "run.json").write_text(json.dumps(record))
    models = build_manifest(copy, "acme/demo", "1.0.0")["models"]
    assert models == [{"name": "policy", "path": "org/policy", "revision": "abc123", "engine": "vllm"},
                      {"name": "reward", "path": "org/reward", "revision": None}]


def test_unfinished_run_and_bad_names_are_refused(demo_run, tmp_path):
    copy = Path(shutil.copytree(demo_run, tmp_path / "copy"))
    record = json.loads((copy / "run.json").read_text())
    record["status"] = "running"
    (copy / "run.json").write_text(json.dumps(record))
    with pytest.raises(RunStateError, match="not finished"):
        build_manifest(copy, "acme/demo", "1.0.0")
    with pytest.raises(UsageError, match="org/name"):
        build_manifest(demo_run, "no-slash", "1.0.0")
    with pytest.raises(UsageError, match="X.Y.Z"):
        build_manifest(demo_run, "acme/demo", "1.0")
    with pytest.raises(UsageError, match="no output 'other'"):
        build_manifest(demo_run, "acme/demo", "1.0.0", output="other")


def test_fingerprint_ignores_file_layout(tmp_path):
    one = fingerprint_of(write_parquet_parts(tmp_path / "one", ROWS, []))
    three = fingerprint_of(write_parquet_parts(tmp_path / "three", ROWS, [3, 4], row_group_size=2))
    jsonl = fingerprint_of(write_jsonl(tmp_path / "rows.jsonl", ROWS))
    table = pa.Table.from_pylist(ROWS)
    reordered = table.select(["meta", "tags", "score", "text", "id"])
    large = table.cast(pa.schema([f.with_type(pa.large_string()) if f.type == pa.string() else f
                                  for f in table.schema]))
    assert one == three == jsonl
    assert content_fingerprint([table]) == content_fingerprint(table.to_batches(max_chunksize=3)) == one
    assert content_fingerprint([reordered]) == one  # column order is not content
    assert content_fingerprint([large]) == one  # nor is the string type's offset width


def test_fingerprint_follows_every_value_and_the_row_order(tmp_path):
    base = fingerprint_of(write_parquet_parts(tmp_path / "base", ROWS, [5]))
    changed = [dict(row) for row in ROWS]
    changed[7] = {**changed[7], "text": "row number 7!"}
    nested = [dict(row) for row in ROWS]
    nested[2] = {**nested[2], "meta": {"step": "gen", "n": 99}}
    assert fingerprint_of(write_parquet_parts(tmp_path / "changed", changed, [5])) != base
    assert fingerprint_of(write_parquet_parts(tmp_path / "nested", nested, [5])) != base
    assert fingerprint_of(write_parquet_parts(tmp_path / "reversed", ROWS[::-1], [5])) != base
    assert fingerprint_of(write_parquet_parts(tmp_path / "fewer", ROWS[:-1], [5])) != base
    assert content_fingerprint([]) != base


def test_manifest_of_a_folder(tmp_path):
    folder = write_parquet_parts(tmp_path / "rows", ROWS, [4])
    manifest = build_manifest(folder, "acme/rows", "0.1.0", schema=None)
    assert manifest["source"] == {"kind": "folder", "name": "rows", "recipe": None, "seed": None, "output": None}
    assert manifest["rows"] == 10 and manifest["funnel"] == [] and manifest["schema"] is None
    assert manifest["fingerprint"] == fingerprint_of(folder)
    assert manifest["features"]["score"] == {"dtype": "float64", "_type": "Value"}
