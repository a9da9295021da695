"""HubRegistry publishes, lists and fetches versions through the real huggingface_hub client and a local Hub."""

from __future__ import annotations

import json
import logging
import struct
import traceback
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.hub.hub_registry import HubRegistry
from datakit.hub.registry import RegistryError, VersionExistsError, VersionNotFoundError
from datakit.testing import HubServer

REPO = "org/zen"
TOKEN = "hf_SecretTokenThatMustNeverLeak0123"


def tiny_png() -> bytes:
    """A real 1x1 grey PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(
        b"IEND", b"")


def stage(folder: Path, version: str, shards: list[list[int]]) -> Path:
    """A staged dataset folder: card, manifest, Parquet shards and a plot."""
    (folder / "data").mkdir(parents=True)
    (folder / "plots").mkdir()
    files = []
    for i, ids in enumerate(shards):
        name = f"data/train-{i:05d}-of-{len(shards):05d}.parquet"
        pq.write_table(pa.table({"id": ids}), folder / name)
        files.append({"path": name, "rows": len(ids)})
    rows = sum(len(ids) for ids in shards)
    manifest = {"format": "datakit-dataset/1", "repo": REPO, "version": version, "rows": rows,
                "files": files, "created": f"2026-01-0{len(shards)}T00:00:00Z"}
    (folder / "datakit.json").write_text(json.dumps(manifest))
    (folder / "README.md").write_text(f"---\nconfigs:\n- config_name: default\n  data_files: data/*.parquet\n---\n"
                                      f"# zen {version}\n")
    (folder / "plots" / "funnel.png").write_bytes(tiny_png())
    return folder


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def hub():
    with HubServer(token=TOKEN) as server, server.client_env():
        yield server


@pytest.fixture
def registry(hub):
    return HubRegistry(endpoint=hub.endpoint, token=TOKEN)


def test_publish_versions_fetch_round_trip(hub, registry, tmp_path):
    assert registry.versions(REPO) == []
    first = stage(tmp_path / "a", "1.2.0", [[1, 2, 3], [4, 5]])
    info = registry.publish(REPO, "1.2.0", first, message="first release")
    assert info.revision == hub.tags(REPO)["v1.2.0"] == hub.commits(REPO)[0]
    assert (info.version, info.tag, info.rows) == ("1.2.0", "v1.2.0", 5)
    assert len(hub.requests_to("commit")) == 1
    (batch,) = hub.requests_to("lfs-batch")
    assert len(json.loads(batch.body)["objects"]) == 3  # two shards and the plot go through LFS

    second = stage(tmp_path / "b", "1.10.0", [[7, 8]])  # one shard now: the old two must not linger
    registry.publish(REPO, "1.10.0", second)
    registry.publish(REPO, "1.9.0", stage(tmp_path / "c", "1.9.0", [[9]]))
    assert len(hub.commits(REPO)) == 4  # the repo's initial commit and one per version

    listed = registry.versions(REPO)
    assert [(v.version, v.rows) for v in listed] == [("1.2.0", 5), ("1.9.0", 1), ("1.10.0", 2)]
    assert listed[0].revision == info.revision and listed[0].created == "2026-01-02T00:00:00Z"

    got = registry.fetch(REPO, "1.2.0", tmp_path / "out1")
    assert tree(got) == tree(first)
    assert tree(registry.fetch(REPO, "1.10.0", tmp_path / "out2")) == tree(second)

    with pytest.raises(VersionNotFoundError, match="1.2.0, 1.9.0, 1.10.0"):
        registry.fetch(REPO, "2.0.0", tmp_path / "out3")
    with pytest.raises(VersionNotFoundError):
        registry.fetch("org/missing", "1.0.0", tmp_path / "out4")


def test_existing_version_is_refused_without_a_commit(hub, registry, tmp_path):
    registry.publish(REPO, "1.0.0", stage(tmp_path / "a", "1.0.0", [[1]]))
    commits = hub.commits(REPO)
    with pytest.raises(VersionExistsError, match="already published"):
        registry.publish(REPO, "1.0.0", stage(tmp_path / "b", "1.0.0", [[2]]))
    assert hub.commits(REPO) == commits
    assert len(hub.requests_to("commit")) == 1


def test_failed_commit_leaves_no_tag(hub, registry, tmp_path):
    folder = stage(tmp_path / "a", "1.0.0", [[1, 2]])
    hub.fail_next("commit")
    with pytest.raises(RegistryError, match="no version was published") as err:
        registry.publish(REPO, "1.0.0", folder)
    assert not isinstance(err.value, VersionExistsError)
    assert hub.tags(REPO) == {} and len(hub.commits(REPO)) == 1
    assert registry.versions(REPO) == []
    assert registry.publish(REPO, "1.0.0", folder).rows == 2  # nothing half-done blocks a retry


def test_failed_tag_says_the_commit_is_untagged(hub, registry, tmp_path):
    hub.fail_next("tag", 409, "Tag v1.0.0 already exists")
    with pytest.raises(RegistryError, match="exists untagged") as err:
        registry.publish(REPO, "1.0.0", stage(tmp_path / "a", "1.0.0", [[1]]))
    assert "NOT published" in str(err.value)
    assert hub.tags(REPO) == {} and len(hub.commits(REPO)) == 2


def test_token_never_leaks(hub, registry, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    registry.publish(REPO, "1.0.0", stage(tmp_path / "a", "1.0.0", [[1]]))
    for attempt in (
        lambda: registry.publish(REPO, "1.0.0", tmp_path / "a"),
        lambda: registry.fetch(REPO, "9.9.9", tmp_path / "nope"),
        lambda: HubRegistry(endpoint=hub.endpoint, token=TOKEN + "x").versions(REPO),
        lambda: HubRegistry(endpoint=hub.endpoint, token=TOKEN + "x").publish(REPO, "2.0.0", tmp_path / "a"),
    ):
        with pytest.raises(RegistryError) as err:
            attempt()
        errors.append(err.value)
    # Neither datakit nor the client (down to the HTTP layer's debug traces) logged the token so far.
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    hub.fail_next("commit", 500, f"echo {TOKEN}")  # even a server that echoes the token is redacted
    with pytest.raises(RegistryError) as err:
        registry.publish(REPO, "3.0.0", stage(tmp_path / "b", "3.0.0", [[2]]))
    errors.append(err.value)
    fetched = registry.fetch(REPO, "1.0.0", tmp_path / "out")

    assert "Invalid credentials" in str(errors[2])
    for error in errors:
        assert TOKEN not in "".join(traceback.format_exception(error))
    assert "***" in str(errors[-1])
    datakit_records = [r for r in caplog.records if r.name.startswith("datakit")]
    assert any("published" in r.getMessage() for r in datakit_records)
    assert all(TOKEN not in r.getMessage() for r in datakit_records)
    assert TOKEN not in repr(registry) + str(registry)
    for path in fetched.rglob("*"):
        assert path.is_dir() or TOKEN.encode() not in path.read_bytes()
    assert not (fetched / ".cache").exists()

    carried = [r for r in hub.requests
               if {k.lower(): v for k, v in r.headers.items()}.get("authorization") == f"Bearer {TOKEN}"]
    assert carried and all(r.route != "lfs-upload" for r in carried)  # uploads use one-time tickets instead
    for r in hub.requests:
        others = {k: v for k, v in r.headers.items() if k.lower() != "authorization"}
        assert TOKEN not in r.path + r.query + json.dumps(others)
        assert r.body is None or TOKEN.encode() not in r.body


def test_fetch_needs_a_new_or_empty_folder(hub, registry, tmp_path):
    registry.publish(REPO, "1.0.0", stage(tmp_path / "a", "1.0.0", [[1]]))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    from datakit.errors import InputError

    with pytest.raises(InputError):
        registry.fetch(REPO, "1.0.0", busy)


def test_bad_names_and_folders_are_usage_errors(registry, tmp_path):
    from datakit.errors import UsageError

    with pytest.raises(UsageError):
        registry.versions("not-a-repo")
    with pytest.raises(UsageError):
        registry.publish(REPO, "1.0", tmp_path)
    with pytest.raises(UsageError, match="datakit.json"):
        registry.publish(REPO, "1.0.0", tmp_path)


def test_files_over_the_lfs_threshold_round_trip(hub, registry, tmp_path):
    """A shard over the server's LFS threshold (set low) travels through LFS and comes back byte for byte."""
    folder = stage(tmp_path / "a", "1.0.0", [list(range(2000))])
    (folder / "notes.txt").write_bytes(b"n" * 5000)
    hub.lfs_threshold = 4096
    registry.publish(REPO, "1.0.0", folder)
    paths = [json.loads(line)["value"]["path"] for line in hub.requests_to("commit")[0].body.splitlines()
             if json.loads(line)["key"] == "lfsFile"]
    assert sorted(paths) == ["data/train-00000-of-00001.parquet", "notes.txt", "plots/funnel.png"]
    assert tree(registry.fetch(REPO, "1.0.0", tmp_path / "out")) == tree(folder)
