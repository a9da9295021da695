"""A dataset registry in a local directory with the Hub's semantics: immutable versions, appearing whole or not at all.

```
<root>/<org>/<name>/v1.2.0/            one folder per version, named by its tag
    datakit.json  README.md  data/  plots/
    .version.json                      the registry's record: revision (content id), rows, created, message
<root>/<org>/<name>/.lock              taken while a version is being added
```

The root is `$DATAKIT_REGISTRY` when set, else `~/.cache/datakit/registry`. A version is copied into a hidden
temp folder next to its final place, every file fsynced, the record written last, then renamed into place
in one step: a crash or an error leaves the temp folder (removed on the next publish), never a version.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from datakit.errors import InputError, UsageError
from datakit.hub.manifest import check_repo_version, file_sha256, utc_now
from datakit.hub.registry import (
    MANIFEST,
    RegistryError,
    VersionExistsError,
    VersionInfo,
    VersionNotFoundError,
    version_key,
)
from datakit.io.writers import _fsync_dir

ENV_VAR = "DATAKIT_REGISTRY"
RECORD = ".version.json"  # the registry's own record inside each version folder; not part of the dataset
_TEMP_PREFIX = ".incoming-"


def default_root() -> Path:
    """`$DATAKIT_REGISTRY`, or `~/.cache/datakit/registry`."""
    configured = os.environ.get(ENV_VAR)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "datakit" / "registry"


def _dataset_files(folder: Path) -> Iterator[Path]:
    """Every file of a dataset folder to publish, in sorted order; symlinks are followed and must resolve."""
    for directory, subdirs, names in os.walk(folder):
        subdirs.sort()
        for name in sorted(names):
            yield Path(directory) / name


def tree_id(folder: Path, files: list[Path]) -> str:
    """A content id of a version: sha256 over each file's relative path and sha256, in path order."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(folder).as_posix()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _copy_file(source: Path, target: Path) -> None:
    """Copy one file's bytes and make them durable."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as reader, open(target, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
        writer.flush()
        os.fsync(writer.fileno())


class LocalRegistry:
    """The Registry protocol on a directory tree (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()

    def __repr__(self) -> str:
        return f"LocalRegistry({str(self.root)!r})"

    def __str__(self) -> str:
        return str(self.root)

    def _repo_dir(self, repo: str) -> Path:
        check_repo_version(repo, "0.0.0")
        return self.root / repo

    @contextlib.contextmanager
    def _locked(self, repo_dir: Path) -> Iterator[None]:
        """Serialise writers of one repository (readers never wait)."""
        repo_dir.mkdir(parents=True, exist_ok=True)
        with open(repo_dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def versions(self, repo: str) -> list[VersionInfo]:
        """Every published version of `repo`, oldest version number first; [] when the repo does not exist."""
        repo_dir = self._repo_dir(repo)
        if not repo_dir.is_dir():
            return []
        found = []
        for entry in repo_dir.iterdir():
            if entry.name.startswith("v") and (entry / RECORD).is_file():
                record = json.loads((entry / RECORD).read_text(encoding="utf-8"))
                found.append(VersionInfo(repo, record["version"], record["revision"], record.get("rows"),
                                         record.get("created")))
        return sorted(found, key=lambda info: version_key(info.version))

    def publish(self, repo: str, version: str, folder: Path, *, private: bool = False,
                message: str | None = None) -> VersionInfo:
        """Add `folder` as `version` of `repo`, whole or not at all; an existing version is refused.

        `private` is recorded (a directory has no access control of its own).
        """
        version = check_repo_version(repo, version)
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            raise UsageError(f"not a staged dataset folder: {MANIFEST} is missing", path=str(folder))
        repo_dir = self._repo_dir(repo)
        with self._locked(repo_dir):
            final = repo_dir / f"v{version}"
            if final.exists():
                raise VersionExistsError(f"{repo}@{version} is already published; versions are immutable, "
                                         "publish a new version number")
            for stale in repo_dir.glob(_TEMP_PREFIX + "*"):
                shutil.rmtree(stale, ignore_errors=True)
            temp = repo_dir / f"{_TEMP_PREFIX}v{version}-{secrets.token_hex(4)}"
            try:
                info = self._write(repo, version, folder, temp, private, message)
                os.rename(temp, final)
            except BaseException as exc:
                shutil.rmtree(temp, ignore_errors=True)
                if isinstance(exc, OSError):
                    raise RegistryError(f"could not publish {repo}@{version} (nothing was published): {exc}",
                                        path=str(self.root)) from None
                raise
            _fsync_dir(repo_dir)
        return info

    def _write(self, repo: str, version: str, folder: Path, temp: Path, private: bool,
               message: str | None) -> VersionInfo:
        """Copy the dataset into `temp` and write the record last."""
        temp.mkdir()
        copied = []
        for source in _dataset_files(folder):
            target = temp / source.relative_to(folder)
            _copy_file(source, target)
            copied.append(target)
        for directory in {p.parent for p in copied} | {temp}:
            _fsync_dir(directory)
        manifest = json.loads((temp / MANIFEST).read_text(encoding="utf-8"))
        info = VersionInfo(repo, version, tree_id(temp, copied), manifest.get("rows"), utc_now())
        record = {"repo": repo, "version": version, "revision": info.revision, "rows": info.rows,
                  "created": info.created, "private": private, "message": message,
                  "fingerprint": manifest.get("fingerprint")}
        _copy_bytes(json.dumps(record, indent=1).encode(), temp / RECORD)
        _fsync_dir(temp)
        return info

    def fetch(self, repo: str, version: str, to: Path) -> Path:
        """Copy exactly that version's files (not the registry's record) into the folder `to` and return it."""
        version = check_repo_version(repo, version)
        source = self._repo_dir(repo) / f"v{version}"
        if not (source / RECORD).is_file():
            known = ", ".join(i.version for i in self.versions(repo)) or "none"
            raise VersionNotFoundError(f"{repo}@{version} is not in the registry at {self.root}; versions: {known}")
        to = Path(to)
        if to.exists() and any(to.iterdir()):
            raise InputError("the folder to fetch into must be new or empty", path=str(to))
        for path in _dataset_files(source):
            if path.name != RECORD or path.parent != source:
                _copy_file(path, to / path.relative_to(source))
        return to


def _copy_bytes(data: bytes, target: Path) -> None:
    with open(target, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
