"""The local directory registry: immutable versions that appear whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.hub.local_registry import RECORD, LocalRegistry, default_root, tree_id
from datakit.hub.registry import MANIFEST, RegistryError, VersionExistsError, VersionNotFoundError


def staged_folder(folder: Path, rows: int = 3) -> Path:
    """A minimal dataset folder as staging leaves it: manifest, card, one shard and a plot."""
    (folder / "data").mkdir(parents=True)
    (folder / "plots").mkdir()
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(rows)]}), folder / "data" / "train-00000-of-00001.parquet")
    (folder / MANIFEST).write_text(json.dumps({"format": "datakit-dataset/1", "rows": rows,
                                               "fingerprint": "sha256:" + "0" * 64}))
    (folder / "README.md").write_text("# card\n")
    (folder / "plots" / "lengths.png").write_bytes(b"\x89PNG fake bytes are fine for a registry")
    return folder


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_publish_versions_fetch(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    assert registry.versions("acme/data") == []
    source = staged_folder(tmp_path / "staged")
    info = registry.publish("acme/data", "1.0.0", source, message="first")
    assert (info.repo, info.version, info.tag, info.rows) == ("acme/data", "1.0.0", "v1.0.0", 3)
    assert info.created.endswith("Z") and len(info.revision) == 64
    files = [p for p in source.rglob("*") if p.is_file()]
    assert info.revision == tree_id(source, files)  # the content id of exactly what was published
    assert registry.versions("acme/data") == [info]
    fetched = registry.fetch("acme/data", "1.0.0", tmp_path / "fetched")
    assert snapshot(fetched).keys() == snapshot(source).keys()  # the registry's own record stays behind
    assert all(snapshot(fetched)[k][0] == v[0] for k, v in snapshot(source).items())
    record = json.loads((tmp_path / "registry" / "acme" / "data" / "v1.0.0" / RECORD).read_text())
    assert record["message"] == "first" and record["private"] is False


def test_versions_sort_by_number(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    for i, version in enumerate(["1.10.0", "1.2.0", "0.9.1"]):
        registry.publish("acme/data", version, staged_folder(tmp_path / f"s{i}", rows=i + 1))
    assert [v.version for v in registry.versions("acme/data")] == ["0.9.1", "1.2.0", "1.10.0"]
    assert [v.rows for v in registry.versions("acme/data")] == [3, 2, 1]


def test_existing_version_is_refused_and_untouched(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    registry.publish("acme/data", "1.0.0", staged_folder(tmp_path / "first", rows=3))
    published = tmp_path / "registry" / "acme" / "data" / "v1.0.0"
    before = snapshot(published)
    with pytest.raises(VersionExistsError, match="already published") as caught:
        registry.publish("acme/data", "1.0.0", staged_folder(tmp_path / "second", rows=5))
    assert caught.value.exit_code == 2
    assert snapshot(published) == before
    assert [v.rows for v in registry.versions("acme/data")] == [3]


def test_failure_while_copying_leaves_no_version(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    source = staged_folder(tmp_path / "staged")
    # A shard that cannot be read: the copy fails after the manifest, card and first shard were copied.
    os.symlink(tmp_path / "gone.parquet", source / "data" / "train-00001-of-00001.parquet")
    with pytest.raises(RegistryError, match="nothing was published") as caught:
        registry.publish("acme/data", "1.0.0", source)
    assert caught.value.exit_code == 1
    assert registry.versions("acme/data") == []
    assert sorted(p.name for p in (tmp_path / "registry" / "acme" / "data").iterdir()) == [".lock"]
    with pytest.raises(VersionNotFoundError):
        registry.fetch("acme/data", "1.0.0", tmp_path / "out")
    # Once the folder is fixed, the same version can be published.
    (source / "data" / "train-00001-of-00001.parquet").unlink()
    assert registry.publish("acme/data", "1.0.0", source).version == "1.0.0"


def test_leftover_temp_folder_is_no_version(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    repo_dir = tmp_path / "registry" / "acme" / "data"
    leftover = repo_dir / ".incoming-v1.0.0-dead"  # what a publish killed midway leaves behind
    staged_folder(leftover)
    assert registry.versions("acme/data") == []
    registry.publish("acme/data", "1.0.1", staged_folder(tmp_path / "staged"))
    assert not leftover.exists()
    assert [v.version for v in registry.versions("acme/data")] == ["1.0.1"]


def test_unknown_version_names_the_known_ones(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    registry.publish("acme/data", "1.0.0", staged_folder(tmp_path / "staged"))
    with pytest.raises(VersionNotFoundError, match="versions: 1.0.0") as caught:
        registry.fetch("acme/data", "2.0.0", tmp_path / "out")
    assert caught.value.exit_code == 2
    with pytest.raises(VersionNotFoundError, match="versions: none"):
        registry.fetch("acme/other", "1.0.0", tmp_path / "out")


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAKIT_REGISTRY", str(tmp_path / "elsewhere"))
    assert default_root() == tmp_path / "elsewhere"
    assert LocalRegistry().root == tmp_path / "elsewhere"
    monkeypatch.delenv("DATAKIT_REGISTRY")
    assert default_root() == Path.home() / ".cache" / "datakit" / "registry"
