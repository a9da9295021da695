"""Pull a published dataset version, check it against its manifest, and open it as a Dataset or a polars frame."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datakit.errors import InputError
from datakit.hub.manifest import FORMAT, arrow_features, content_fingerprint, file_sha256, read_rows
from datakit.hub.refs import check_repo, open_registry, parse_ref
from datakit.hub.registry import MANIFEST, Registry, RegistryError, VersionInfo
from datakit.io.writers import _fsync_dir

if TYPE_CHECKING:
    import datasets
    import polars as pl

VALIDATION_ERRORS_SHOWN = 5


class IntegrityError(RegistryError):
    """Downloaded files do not match the manifest they came with: changed, damaged, missing or extra (exit 1)."""

    exit_code = 1


def default_pull_root() -> Path:
    """Where pulled versions go when no folder is given: `~/.cache/datakit/datasets/<org>/<name>/<version>`."""
    return Path.home() / ".cache" / "datakit" / "datasets"


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a dataset folder."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"not a datakit dataset: {MANIFEST} is missing", path=str(folder)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"unreadable manifest: {exc}", path=str(path)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IntegrityError(f"not a {FORMAT} manifest", path=str(path))
    return manifest


def data_files(folder: str | os.PathLike[str], manifest: dict[str, Any] | None = None) -> list[Path]:
    """The dataset's Parquet files, in the manifest's order."""
    manifest = manifest or read_manifest(folder)
    return [Path(folder) / entry["path"] for entry in manifest["files"]]


def verify(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a dataset folder against its manifest and return the manifest; raises IntegrityError on a mismatch.

    Checks, in order: every listed file is there with its size and sha256 and no unlisted data file is; the rows
    add up; the content fingerprint, recomputed from the rows, is the manifest's; the columns have the
    manifest's features; and the rows validate as the manifest's schema, when it names one.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    listed = {entry["path"] for entry in manifest["files"]}
    for entry in manifest["files"]:
        path = folder / entry["path"]
        if not path.is_file():
            raise IntegrityError("listed in the manifest but missing", path=entry["path"])
        size = path.stat().st_size
        if size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
            raise IntegrityError(f"the file differs from the one published ({size:,} bytes; the manifest says "
                                 f"{entry['bytes']:,} bytes and sha256 {entry['sha256'][:12]}...): it was changed "
                                 "or damaged; pull it again", path=entry["path"])
    extra = sorted(p.relative_to(folder).as_posix() for p in (folder / "data").rglob("*")
                   if p.is_file() and p.relative_to(folder).as_posix() not in listed)
    if extra:
        raise IntegrityError(f"data files not in the manifest: {', '.join(extra)}", path=str(folder))
    files = data_files(folder, manifest)
    schema, batches = read_rows(files)
    rows = 0

    def counted():
        nonlocal rows
        for batch in batches:
            rows += batch.num_rows
            yield batch

    fingerprint = content_fingerprint(counted())
    if rows != manifest["rows"]:
        raise IntegrityError(f"{rows:,} rows, the manifest says {manifest['rows']:,}", path=str(folder))
    if fingerprint != manifest["fingerprint"]:
        raise IntegrityError(f"the rows' fingerprint {fingerprint} is not the published {manifest['fingerprint']}",
                             path=str(folder))
    if arrow_features(schema) != manifest["features"]:
        raise IntegrityError("the columns' types differ from the manifest's features", path=str(folder))
    if manifest.get("schema"):
        from datakit.records.validate import validate_batches

        report = validate_batches(read_rows(files)[1], str(folder), manifest["schema"])
        if report.error_count or report.status != "valid":
            shown = "; ".join(str(issue) for issue in report.issues[:VALIDATION_ERRORS_SHOWN])
            raise IntegrityError(f"the rows do not validate as {manifest['schema']}: {shown or report.failure}",
                                 path=str(folder))
    return manifest


def pull(ref: str, *, to: str | os.PathLike[str] | None = None,
         registry: str | os.PathLike[str] | Registry | None = None) -> Path:
    """Download the version `ref` (`org/name@X.Y.Z`), verify it (see `verify`) and return its local folder.

    `to` defaults to `~/.cache/datakit/datasets/<org>/<name>/<version>`. A folder that already holds that
    version is verified again and reused; any other non-empty folder is refused. The download goes to a
    temp folder that is renamed into place only once verified, so `to` never holds an unchecked dataset.
    Example: `path = pull("acme/demo-sft@1.0.0"); ds = as_dataset(path)`.
    """
    parsed = parse_ref(ref)
    target = Path(to) if to is not None else default_pull_root() / parsed.repo / parsed.version
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        if (target / MANIFEST).is_file():
            held = read_manifest(target)
            if (held.get("repo"), held.get("version")) == (parsed.repo, parsed.version):
                verify(target)
                return target
        raise InputError(f"the folder is not empty and does not hold {parsed}; choose another with --to",
                         path=str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.{secrets.token_hex(4)}.pull"
    try:
        open_registry(registry).fetch(parsed.repo, parsed.version, temp)
        manifest = verify(temp)
        if (manifest.get("repo"), manifest.get("version")) != (parsed.repo, parsed.version):
            raise IntegrityError(f"the manifest is for {manifest.get('repo')}@{manifest.get('version')}, not "
                                 f"{parsed}", path=MANIFEST)
        if target.exists():
            target.rmdir()
        os.rename(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    return target


def versions(repo: str, *, registry: str | os.PathLike[str] | Registry | None = None) -> list[VersionInfo]:
    """Every published version of `repo` (`org/name`), oldest first."""
    return open_registry(registry).versions(check_repo(repo))


def as_dataset(path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> datasets.Dataset:
    """A pulled dataset as a `datasets.Dataset` with the manifest's features (memory-mapped via `cache_dir`)."""
    from datasets import Dataset, Features

    manifest = read_manifest(path)
    files = [str(p) for p in data_files(path, manifest)]
    return Dataset.from_parquet(files, features=Features.from_dict(manifest["features"]),
                                cache_dir=None if cache_dir is None else str(cache_dir))


def as_lazyframe(path: str | os.PathLike[str]) -> pl.LazyFrame:
    """A pulled dataset as a polars LazyFrame over its Parquet files."""
    import polars as pl

    return pl.scan_parquet([str(p) for p in data_files(path)])
