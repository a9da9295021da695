"""Finding data files: local files, local folders (plain or `datasets` save folders) and Hub datasets."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from datakit.errors import InputError
from datakit.io._common import short_message
from datakit.io.hub import HF_PREFIX, list_hub_files, looks_like_repo_id, parse_hub_ref

_FORMAT_BY_SUFFIX = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
_COMPRESSION_BY_SUFFIX = {".gz": "gzip", ".zst": "zstd"}
# Only the text formats may be compressed as a whole file; Parquet and Arrow compress internally.
_COMPRESSIBLE_FORMATS = {"jsonl", "json"}

SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_FORMAT_BY_SUFFIX) + tuple(
    suffix + comp
    for suffix, fmt in _FORMAT_BY_SUFFIX.items()
    if fmt in _COMPRESSIBLE_FORMATS
    for comp in _COMPRESSION_BY_SUFFIX
)

_READS = ".parquet, .pq, .jsonl, .ndjson, .json (text formats also as .gz or .zst), .arrow, .feather, .ipc"


@dataclass(frozen=True)
class DataFile:
    """One data file to read: where it is shown as, its format, and how to open it."""

    path: str  # display path: as the user gave it, plus the part under a folder or Hub ref
    format: str  # "parquet", "jsonl", "json" or "arrow"
    compression: str | None = None  # "gzip", "zstd" or None (whole-file compression of text formats)
    local_path: str | None = None  # set for files on this machine, which can be memory-mapped
    size: int | None = None  # bytes on disk, when known
    opener: Callable[[], BinaryIO] | None = field(default=None, compare=False, repr=False)

    def open(self) -> BinaryIO:
        """Open the raw (still compressed, if it is) bytes of the file for reading."""
        try:
            if self.local_path is not None:
                return open(self.local_path, "rb")
            if self.opener is not None:
                return self.opener()
        except OSError as exc:
            raise InputError(f"cannot open: {exc.strerror or short_message(exc)}", path=self.path) from None
        except Exception as exc:  # remote openers raise their own types; all mean "cannot open"
            raise InputError(f"cannot open: {short_message(exc)}", path=self.path) from None
        raise InputError("has neither a local path nor an opener", path=self.path)


@dataclass(frozen=True)
class Listing:
    """The data files found for a ref, in reading order, and the files passed over with the reason."""

    files: list[DataFile]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def classify(name: str) -> tuple[str, str | None] | str:
    """Format and compression for a file name, or the unsupported suffix as a string."""
    lower = name.lower()
    stem, dot_suffix = os.path.splitext(lower)
    compression = _COMPRESSION_BY_SUFFIX.get(dot_suffix)
    if compression is not None:
        inner = os.path.splitext(stem)[1]
        fmt = _FORMAT_BY_SUFFIX.get(inner)
        if fmt in _COMPRESSIBLE_FORMATS:
            return fmt, compression
        return inner + dot_suffix
    fmt = _FORMAT_BY_SUFFIX.get(dot_suffix)
    if fmt is not None:
        return fmt, None
    return dot_suffix


def list_data_files(ref: str | os.PathLike[str]) -> Listing:
    """Resolve a local file, a local folder or a Hub dataset ref to the data files it holds.

    Local paths win over Hub refs: `org/name` is only looked up on the Hub when no such local
    path exists. Raises InputError when nothing readable is found.
    """
    ref_str = os.fspath(ref)
    if ref_str.startswith(HF_PREFIX):
        return _list_hub(ref_str)
    if os.path.isdir(ref_str):
        return _list_directory(ref_str)
    if os.path.exists(ref_str):
        return Listing(files=[_local_file(ref_str, ref_str)])
    if os.path.lexists(ref_str):
        raise InputError("broken symbolic link", path=ref_str)
    if looks_like_repo_id(ref_str):
        return _list_hub(ref_str)
    raise InputError("no such file or directory", path=ref_str)


def _unsupported(suffix: str) -> str:
    return f"'{suffix}'" if suffix else "(no suffix)"


def _local_file(path: str, display: str) -> DataFile:
    kind = classify(os.path.basename(path))
    if isinstance(kind, str):
        raise InputError(f"unsupported file type {_unsupported(kind)}; datakit reads: {_READS}", path=display)
    if not os.path.exists(path):
        raise InputError("broken symbolic link", path=display)
    if not os.access(path, os.R_OK):
        raise InputError("permission denied", path=display)
    fmt, compression = kind
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=display) from None
    return DataFile(path=display, format=fmt, compression=compression, local_path=path, size=size)


def _list_directory(root: str) -> Listing:
    files: list[DataFile] = []
    skipped: list[tuple[str, str]] = []
    _walk(root, root, files, skipped)
    if not files:
        raise InputError(f"no data files found (datakit reads: {_READS})", path=root)
    return Listing(files=files, skipped=skipped)


def _walk(directory: str, display: str, files: list[DataFile], skipped: list[tuple[str, str]]) -> None:
    """Collect data files under `directory` in sorted order; `display` is how it is shown."""
    saved = _saved_dataset_files(directory)
    if saved is not None:
        for name in saved:
            files.append(_arrow_stream_file(os.path.join(directory, name), os.path.join(display, name)))
        return
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as exc:
        raise InputError(f"cannot list folder: {exc.strerror}", path=display) from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        shown = os.path.join(display, entry.name)
        if entry.is_dir(follow_symlinks=False):
            _walk(entry.path, shown, files, skipped)
        elif entry.is_symlink() and entry.is_dir():
            # Not followed, so that a link back up the tree cannot make the walk endless.
            skipped.append((shown, "symbolic link to a folder (not followed)"))
        else:
            kind = classify(entry.name)
            if isinstance(kind, str):
                skipped.append((shown, f"not a data file ({kind or 'no suffix'})"))
            else:
                files.append(_local_file(entry.path, shown))


def _saved_dataset_files(directory: str) -> list[str] | None:
    """Data files of a `datasets` save_to_disk folder (relative to it), or None if it is not one.

    A saved DatasetDict lists its splits in `dataset_dict.json`; each split is a saved Dataset.
    """
    dict_meta = os.path.join(directory, "dataset_dict.json")
    if os.path.isfile(dict_meta):
        splits = _load_json(dict_meta).get("splits")
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise InputError("dataset_dict.json has no list of splits", path=dict_meta)
        names = []
        for split in splits:
            inner = _saved_dataset_files(os.path.join(directory, split))
            if inner is None:
                raise InputError(f"split '{split}' is not a saved dataset folder", path=dict_meta)
            names.extend(os.path.join(split, name) for name in inner)
        return names
    state = os.path.join(directory, "state.json")
    if not (os.path.isfile(state) and os.path.isfile(os.path.join(directory, "dataset_info.json"))):
        return None
    data_files = _load_json(state).get("_data_files")
    if not isinstance(data_files, list):
        raise InputError("state.json has no _data_files list", path=state)
    try:
        return [str(item["filename"]) for item in data_files]
    except (TypeError, KeyError):
        raise InputError("state.json has a _data_files entry without a filename", path=state) from None


def _load_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read dataset metadata: {short_message(exc)}", path=path) from None
    if not isinstance(value, dict):
        raise InputError("dataset metadata is not a JSON object", path=path)
    return value


def _arrow_stream_file(path: str, display: str) -> DataFile:
    if not os.path.isfile(path):
        raise InputError("listed in the saved dataset's state.json but missing", path=display)
    return DataFile(path=display, format="arrow", local_path=path, size=os.path.getsize(path))


def _list_hub(ref: str) -> Listing:
    hub = parse_hub_ref(ref)
    files: list[DataFile] = []
    skipped: list[tuple[str, str]] = []
    for entry in list_hub_files(ref, hub):
        if any(part.startswith(".") for part in entry.relative.split("/")):
            continue
        shown = hub.display(entry.relative)
        kind = classify(entry.name)
        if isinstance(kind, str):
            if not entry.relative:
                raise InputError(f"unsupported file type {_unsupported(kind)}; datakit reads: {_READS}", path=shown)
            skipped.append((shown, f"not a data file ({kind or 'no suffix'})"))
            continue
        fmt, compression = kind
        files.append(DataFile(shown, fmt, compression, size=entry.size, opener=entry.opener))
    if not files:
        raise InputError(f"no data files found (datakit reads: {_READS})", path=ref)
    return Listing(files=files, skipped=skipped)
