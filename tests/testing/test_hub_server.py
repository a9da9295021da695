"""The local Hub answers the real huggingface_hub client and datasets: uploads over LFS, tags, downloads, auth."""

from __future__ import annotations

import hashlib
import io
import json

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.testing import HubServer

REPO = "org/zen"
CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/*.parquet
---
# zen
"""


def parquet_bytes(values: list[int]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": values, "text": [f"row {v}" for v in values]}), buffer)
    return buffer.getvalue()


@pytest.fixture
def hub():
    with HubServer() as server, server.client_env():
        yield server


@pytest.fixture
def api(hub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.endpoint, token=hub.token)


def commit_lines(request) -> list[dict]:
    return [json.loads(line) for line in request.body.decode().splitlines()]


def test_upload_folder_goes_through_lfs_and_tags_pin_downloads(hub, api, tmp_path):
    from huggingface_hub import hf_hub_download, snapshot_download

    folder = tmp_path / "ds"
    (folder / "data").mkdir(parents=True)
    table = parquet_bytes(list(range(50)))
    (folder / "data" / "train.parquet").write_bytes(table)
    (folder / "notes.txt").write_text("first\n")

    api.create_repo(REPO, repo_type="dataset")
    api.create_repo(REPO, repo_type="dataset", exist_ok=True)  # the 409 the client tolerates
    first = api.upload_folder(folder_path=folder, repo_id=REPO, repo_type="dataset", commit_message="first")
    assert [r.status for r in hub.requests_to("create-repo")] == [200, 409]

    oid = hashlib.sha256(table).hexdigest()
    (batch,) = hub.requests_to("lfs-batch")
    assert json.loads(batch.body)["objects"] == [{"oid": oid, "size": len(table)}]
    assert [r.status for r in hub.requests_to("lfs-upload")] == [200]
    (commit,) = hub.requests_to("commit")
    lines = {line["key"]: line["value"] for line in commit_lines(commit)}
    assert lines["lfsFile"] == {"path": "data/train.parquet", "algo": "sha256", "oid": oid, "size": len(table)}
    assert lines["file"]["path"] == "notes.txt"

    api.create_tag(REPO, tag="v1.0.0", revision=first.oid, repo_type="dataset")
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(REPO, tag="v1.0.0", repo_type="dataset")
    assert err.value.response.status_code == 409

    refs = api.list_repo_refs(REPO, repo_type="dataset")
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0.0", first.oid)]
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", first.oid)]

    tree = {e.path: e for e in api.list_repo_tree(REPO, repo_type="dataset", recursive=True, expand=True)}
    assert sorted(tree) == [".gitattributes", "data", "data/train.parquet", "notes.txt"]
    assert tree["data/train.parquet"].lfs.sha256 == oid and tree["notes.txt"].lfs is None
    assert tree["data/train.parquet"].last_commit.oid == first.oid
    top = [e.path for e in api.list_repo_tree(REPO, repo_type="dataset")]
    assert top == [".gitattributes", "data", "notes.txt"]

    (info,) = api.get_paths_info(REPO, ["data/train.parquet"], repo_type="dataset", revision="v1.0.0")
    assert (info.size, info.lfs.sha256) == (len(table), oid)

    cache = tmp_path / "cache"
    by_tag = hf_hub_download(REPO, "data/train.parquet", repo_type="dataset", revision="v1.0.0", cache_dir=cache)
    by_sha = hf_hub_download(REPO, "data/train.parquet", repo_type="dataset", revision=first.oid,
                             cache_dir=tmp_path / "cache2")
    assert open(by_tag, "rb").read() == open(by_sha, "rb").read() == table
    resolved = [r for r in hub.requests_to("resolve") if r.method == "HEAD"]
    assert all(r.status == 200 for r in resolved)

    snapshot = tmp_path / "snapshot"
    snapshot_download(REPO, repo_type="dataset", revision="v1.0.0", local_dir=snapshot)
    assert (snapshot / "data" / "train.parquet").read_bytes() == table
    assert (snapshot / "notes.txt").read_text() == "first\n"

    (folder / "notes.txt").write_text("second\n")
    second = api.upload_folder(folder_path=folder, repo_id=REPO, repo_type="dataset", commit_message="second")
    assert second.oid != first.oid
    assert api.dataset_info(REPO, revision="v1.0.0").sha == first.oid
    assert api.dataset_info(REPO).sha == second.oid
    old = hf_hub_download(REPO, "notes.txt", repo_type="dataset", revision="v1.0.0", cache_dir=cache)
    new = hf_hub_download(REPO, "notes.txt", repo_type="dataset", revision="main", cache_dir=cache)
    assert (open(old).read(), open(new).read()) == ("first\n", "second\n")
    # the unchanged Parquet file was not uploaded again: the client asked, the server named its oid
    assert len(hub.requests_to("lfs-upload")) == 1
    assert [c.title for c in api.list_repo_commits(REPO, repo_type="dataset")] == ["second", "first",
                                                                                   "initial commit"]


def test_writes_need_the_token_and_private_reads_too(hub, api):
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    anonymous = HfApi(endpoint=hub.endpoint, token=False)
    with pytest.raises(HfHubHTTPError) as err:
        anonymous.create_repo(REPO, repo_type="dataset")
    assert err.value.response.status_code == 401

    api.create_repo(REPO, repo_type="dataset", private=True)
    with pytest.raises(HfHubHTTPError) as err:
        anonymous.create_commit(REPO, [CommitOperationAdd("a.txt", b"a")], commit_message="x", repo_type="dataset")
    assert err.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        anonymous.dataset_info(REPO)
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=hub.endpoint, token="hf_not_the_right_one").dataset_info(REPO)
    assert err.value.response.status_code == 401
    assert api.dataset_info(REPO).private is True
    assert len(hub.commits(REPO)) == 1


def test_commit_checks_lfs_objects_and_parent(hub, api):
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    api.create_repo(REPO, repo_type="dataset")
    head = hub.commits(REPO)[0]
    url = f"{hub.endpoint}/api/datasets/{REPO}/commit/main"
    auth = {"Authorization": f"Bearer {hub.token}", "Content-Type": "application/x-ndjson"}

    def ndjson(*lines: dict) -> bytes:
        return b"".join(json.dumps(line).encode() + b"\n" for line in lines)

    header = {"key": "header", "value": {"summary": "x", "description": ""}}
    ghost = {"key": "lfsFile", "value": {"path": "a.parquet", "algo": "sha256", "oid": "0" * 64, "size": 3}}
    assert httpx.post(url, headers=auth, content=ndjson(header, ghost)).status_code == 422
    stale = {"key": "header", "value": {"summary": "x", "parentCommit": "f" * 40}}
    added = {"key": "file", "value": {"path": "a.txt", "content": "YQ==", "encoding": "base64"}}
    assert httpx.post(url, headers=auth, content=ndjson(stale, added)).status_code == 412
    assert hub.commits(REPO) == [head]

    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(REPO, [CommitOperationAdd("a.txt", b"a")], commit_message="x", repo_type="dataset",
                          parent_commit="f" * 40)
    assert err.value.response.status_code == 412
    hub.fail_next("commit")
    with pytest.raises(HfHubHTTPError):
        api.create_commit(REPO, [CommitOperationAdd("a.txt", b"a")], commit_message="x", repo_type="dataset")
    assert hub.commits(REPO) == [head]
    done = api.create_commit(REPO, [CommitOperationAdd("a.txt", b"a")], commit_message="x", repo_type="dataset",
                             parent_commit=head)
    assert hub.commits(REPO) == [done.oid, head]


def test_hffilesystem_and_load_dataset_at_a_tag(hub, api, tmp_path):
    import datasets
    from huggingface_hub import CommitOperationAdd, HfFileSystem

    table = parquet_bytes(list(range(30)))
    api.create_repo(REPO, repo_type="dataset")
    api.create_commit(REPO, [CommitOperationAdd("README.md", CARD.encode()),
                             CommitOperationAdd("data/train-00000-of-00001.parquet", table)],
                      commit_message="v1", repo_type="dataset")
    api.create_tag(REPO, tag="v1.0.0", repo_type="dataset")
    api.create_commit(REPO, [CommitOperationAdd("data/train-00000-of-00001.parquet", parquet_bytes([7]))],
                      commit_message="v2", repo_type="dataset")

    fs = HfFileSystem(endpoint=hub.endpoint, token=hub.token, skip_instance_cache=True)
    assert fs.ls(f"datasets/{REPO}@v1.0.0/data", detail=False) == [
        f"datasets/{REPO}@v1.0.0/data/train-00000-of-00001.parquet"]
    with fs.open(f"datasets/{REPO}@v1.0.0/data/train-00000-of-00001.parquet", "rb", block_size=16) as f:
        f.seek(8)
        assert f.read(20) == table[8:28]
    assert any(r.status == 206 and "bytes=" in r.headers.get("range", r.headers.get("Range", ""))
               for r in hub.requests_to("resolve"))

    loaded = datasets.load_dataset(REPO, revision="v1.0.0", cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].num_rows == 30
    assert loaded["train"]["id"] == list(range(30))
    assert loaded["train"].column_names == ["id", "text"]


def test_state_survives_a_restart_on_the_same_root(tmp_path):
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

    root = tmp_path / "hub"
    with HubServer(root=root) as hub, hub.client_env():
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        api.create_repo(REPO, repo_type="dataset")
        done = api.create_commit(REPO, [CommitOperationAdd("t.parquet", parquet_bytes([1, 2]))],
                                 commit_message="x", repo_type="dataset")
        api.create_tag(REPO, tag="v1.0.0", repo_type="dataset")
    with HubServer(root=root) as hub, hub.client_env():
        assert hub.tags(REPO) == {"v1.0.0": done.oid}
        path = hf_hub_download(REPO, "t.parquet", repo_type="dataset", revision="v1.0.0",
                               cache_dir=tmp_path / "cache")
        assert pq.read_table(path)["id"].to_pylist() == [1, 2]
    assert root.is_dir()  # a given root is the caller's: kept


def test_fail_next_names_a_known_route():
    with HubServer() as hub:
        with pytest.raises(ValueError, match="unknown route"):
            hub.fail_next("comit")
