"""Tests for finding data files: suffix rules, folders, `datasets` save folders and Hub refs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from datakit.errors import InputError
from datakit.io import (
    SUPPORTED_SUFFIXES,
    DataFile,
    Listing,
    list_data_files,
    read_table,
)
from datakit.io.hub import HubRef, looks_like_repo_id, parse_hub_ref


@pytest.mark.parametrize(
    ("name", "fmt", "compression"),
    [
        ("a.parquet", "parquet", None),
        ("a.PQ", "parquet", None),
        ("a.jsonl", "jsonl", None),
        ("a.ndjson", "jsonl", None),
        ("a.jsonl.gz", "jsonl", "gzip"),
        ("a.jsonl.zst", "jsonl", "zstd"),
        ("a.json", "json", None),
        ("a.json.gz", "json", "gzip"),
        ("a.arrow", "arrow", None),
        ("a.feather", "arrow", None),
        ("a.ipc", "arrow", None),
    ],
)
def test_explicit_file_format_from_suffix(tmp_path, name, fmt, compression):
    (tmp_path / name).write_bytes(b"x")
    listing = list_data_files(tmp_path / name)
    assert listing.files == [DataFile(str(tmp_path / name), fmt, compression, str(tmp_path / name), 1)]
    assert listing.skipped == []


@pytest.mark.parametrize(("name", "suffix"), [("a.csv", "'.csv'"), ("a.parquet.gz", "'.parquet.gz'"), ("README", "(no suffix)")])
def test_explicit_file_with_unsupported_suffix(tmp_path, name, suffix):
    (tmp_path / name).write_text("x")
    with pytest.raises(InputError) as info:
        list_data_files(tmp_path / name)
    assert info.value.message.startswith(f"unsupported file type {suffix}; datakit reads: .parquet")
    assert info.value.path == str(tmp_path / name)


def test_supported_suffixes_cover_compressed_text_only():
    assert ".jsonl.zst" in SUPPORTED_SUFFIXES and ".json.gz" in SUPPORTED_SUFFIXES
    assert ".parquet.gz" not in SUPPORTED_SUFFIXES


def test_missing_path(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(InputError) as info:
        list_data_files(missing)
    assert (info.value.message, info.value.path) == ("no such file or directory", missing)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.jsonl"
    path.write_text('{"a": 1}\n')
    # Tests may run as root, which reads anything, so the permission check is simulated.
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(InputError, match="permission denied"):
        list_data_files(path)


def test_directory_lists_data_files_recursively_and_skips_the_rest(tmp_path):
    for name in ["b.jsonl", "a.parquet", "sub/c.json.gz", "sub/deeper/d.arrow", "README.md", "notes.txt",
                 "sub/data.csv", ".hidden.jsonl", ".cache/e.jsonl", "sub/LICENSE"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    ref = str(tmp_path) + os.sep
    listing = list_data_files(ref)
    assert [f.path for f in listing.files] == [
        os.path.join(ref, p) for p in ["a.parquet", "b.jsonl", "sub/c.json.gz", "sub/deeper/d.arrow"]
    ]
    assert [f.format for f in listing.files] == ["parquet", "jsonl", "json", "arrow"]
    assert listing.skipped == [
        (os.path.join(ref, "README.md"), "not a data file (.md)"),
        (os.path.join(ref, "notes.txt"), "not a data file (.txt)"),
        (os.path.join(ref, "sub/LICENSE"), "not a data file (no suffix)"),
        (os.path.join(ref, "sub/data.csv"), "not a data file (.csv)"),
    ]


def test_directory_without_data_files(tmp_path):
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(InputError) as info:
        list_data_files(tmp_path)
    assert info.value.message.startswith("no data files found (datakit reads: .parquet, .pq, .jsonl")
    assert info.value.path == str(tmp_path)


def _hub_offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The client reads the variable once at import, and it may already be imported.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_saved_dataset_folder(tmp_path, monkeypatch, chat_rows):
    _hub_offline(monkeypatch)
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_list(chat_rows)
    dataset.save_to_disk(str(tmp_path / "saved"), num_shards=2)
    listing = list_data_files(tmp_path / "saved")
    assert [os.path.basename(f.path) for f in listing.files] == [
        "data-00000-of-00002.arrow",
        "data-00001-of-00002.arrow",
    ]
    assert listing.skipped == []
    assert read_table(tmp_path / "saved").to_pylist() == chat_rows


def test_saved_dataset_dict_folder_follows_split_order(tmp_path, monkeypatch, chat_rows):
    _hub_offline(monkeypatch)
    datasets = pytest.importorskip("datasets")
    splits = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(chat_rows[:5]), "test": datasets.Dataset.from_list(chat_rows[5:])}
    )
    splits.save_to_disk(str(tmp_path / "dd"))
    listing = list_data_files(tmp_path / "dd")
    assert [os.path.relpath(f.path, tmp_path / "dd") for f in listing.files] == [
        os.path.join("train", "data-00000-of-00001.arrow"),
        os.path.join("test", "data-00000-of-00001.arrow"),
    ]
    assert read_table(listing).to_pylist() == chat_rows[:5] + chat_rows[5:]


def test_saved_dataset_inside_a_plain_folder(tmp_path, monkeypatch, chat_rows):
    _hub_offline(monkeypatch)
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(chat_rows).save_to_disk(str(tmp_path / "root" / "saved"))
    (tmp_path / "root" / "extra.jsonl").write_text('{"id": "x"}\n')
    listing = list_data_files(tmp_path / "root")
    # The save folder's state.json / dataset_info.json are metadata, not JSON data files.
    assert [os.path.basename(f.path) for f in listing.files] == ["extra.jsonl", "data-00000-of-00001.arrow"]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("hf://datasets/org/name", HubRef("org/name")),
        ("hf://datasets/org/name@v1.0", HubRef("org/name", "v1.0")),
        ("hf://datasets/org/name/data/train", HubRef("org/name", None, "data/train")),
        ("hf://datasets/org/name@main/data/x.jsonl", HubRef("org/name", "main", "data/x.jsonl")),
        ("hf://datasets/org/name@refs/convert/parquet/default", HubRef("org/name", "refs/convert/parquet", "default")),
        ("hf://datasets/org/name@refs/pr/3", HubRef("org/name", "refs/pr/3")),
        ("org/name", HubRef("org/name")),
        ("my-org/my.data_set@refs/pr/12", HubRef("my-org/my.data_set", "refs/pr/12")),
    ],
)
def test_parse_hub_ref(ref, expected):
    assert parse_hub_ref(ref) == expected


def test_hub_display_path():
    assert HubRef("org/name", "v1", "data").display("train/a.jsonl") == "hf://datasets/org/name@v1/data/train/a.jsonl"
    assert HubRef("org/name").display() == "hf://datasets/org/name"


@pytest.mark.parametrize("ref", ["hf://datasets/org", "hf://datasets/org/name@", "hf://datasets/-bad/name"])
def test_parse_hub_ref_rejects_malformed(ref):
    with pytest.raises(InputError):
        parse_hub_ref(ref)


@pytest.mark.parametrize(("ref", "looks"), [("org/name", True), ("org/name@v2", True), ("a/b/c", False),
                                            ("./org/name", False), ("name", False), ("org/na me", False)])
def test_looks_like_repo_id(ref, looks):
    assert looks_like_repo_id(ref) is looks


def test_local_path_wins_over_hub_ref(tmp_path, monkeypatch):
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").write_text('{"a": 1}\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="unsupported file type"):
        list_data_files("org/name")


@pytest.mark.parametrize("ref", ["hf://datasets/datakit-test/does-not-exist@main/data", "datakit-test/does-not-exist"])
def test_hub_ref_offline_gives_clear_error(tmp_path, monkeypatch, ref):
    _hub_offline(monkeypatch)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as info:
        list_data_files(ref)
    assert info.value.path == ref
    assert info.value.message.startswith("not a local path, and the Hugging Face Hub could not provide it: ")
    assert "offline" in info.value.message


def test_import_stays_light():
    code = (
        "import sys, datakit.io; "
        "heavy = [m for m in ('datasets', 'huggingface_hub', 'polars', 'torch', 'pandas') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"


def test_listing_is_accepted_by_readers(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"a": 1}\n')
    listing = list_data_files(tmp_path)
    assert isinstance(listing, Listing)
    assert read_table(listing).to_pylist() == [{"a": 1}]


class _FakeHubFS:
    """Stands in for HfFileSystem: answers like it for one repo, from bytes held in memory."""

    files = {
        "data/train.jsonl": b'{"a": 1}\n{"a": 2}\n',
        "data/sub/more.jsonl.gz": None,
        "data/README.md": b"# card",
        "data/.gitattributes": b"*",
    }

    def resolve_path(self, path, revision=None):
        root = path.replace("datasets/org/name", f"datasets/org/name@{revision}" if revision else "datasets/org/name", 1)

        class Resolved:
            def unresolve(self):
                return root

        return Resolved()

    def find(self, path, revision=None, detail=False):
        base = self.resolve_path(path, revision).unresolve()
        repo_root = base.split("/data")[0]
        found = {}
        for rel, data in self.files.items():
            name = f"{repo_root}/{rel}"
            if name == base or name.startswith(base + "/"):
                found[name] = {"type": "file", "size": len(data or b"x")}
        return found

    def open(self, name, mode):
        import gzip
        import io

        rel = name.split("/", 3)[-1]
        data = self.files[rel]
        return io.BytesIO(gzip.compress(b'{"a": 3}\n') if data is None else data)


def test_hub_listing_and_reading_through_the_client(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfFileSystem", _FakeHubFS)
    listing = list_data_files("hf://datasets/org/name@v1/data")
    assert [f.path for f in listing.files] == [
        "hf://datasets/org/name@v1/data/sub/more.jsonl.gz",
        "hf://datasets/org/name@v1/data/train.jsonl",
    ]
    assert [f.compression for f in listing.files] == ["gzip", None]
    assert listing.skipped == [("hf://datasets/org/name@v1/data/README.md", "not a data file (.md)")]
    assert read_table(listing).to_pylist() == [{"a": 3}, {"a": 1}, {"a": 2}]
    single = list_data_files("hf://datasets/org/name/data/train.jsonl")
    assert [f.path for f in single.files] == ["hf://datasets/org/name/data/train.jsonl"]
    with pytest.raises(InputError, match="unsupported file type '.md'"):
        list_data_files("hf://datasets/org/name/data/README.md")


def test_scan_resolves_the_source_at_once(tmp_path):
    from datakit.errors import UsageError
    from datakit.io import scan

    with pytest.raises(InputError, match="no such file or directory"):
        scan(tmp_path / "missing.jsonl")
    (tmp_path / "a.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(UsageError):
        scan(tmp_path / "a.jsonl", batch_size=0)
