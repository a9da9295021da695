"""What every dataset registry offers: immutable versions of a repository, published whole or not at all."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from datakit.errors import DatakitError

VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
MANIFEST = "datakit.json"  # the machine-readable manifest at the root of every published version


def version_key(version: str) -> tuple[int, ...]:
    """A version number as a tuple that sorts numerically ("1.10.0" after "1.9.0")."""
    return tuple(int(part) for part in version.split("."))


class RegistryError(DatakitError):
    """A registry refused or failed an operation (exit 1); nothing was half-published."""

    exit_code = 1


class VersionExistsError(RegistryError):
    """The version is already published: versions are immutable (exit 2)."""

    exit_code = 2


class VersionNotFoundError(RegistryError):
    """No such repository or version in the registry (exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class VersionInfo:
    """One published version: its tag (`vX.Y.Z`), the revision it points at, and its row count."""

    repo: str
    version: str
    revision: str  # a commit id on the Hub; the version folder's content id in a local registry
    rows: int | None = None
    created: str | None = None  # ISO 8601, UTC

    @property
    def tag(self) -> str:
        return f"v{self.version}"


class Registry(Protocol):
    """A place that stores dataset versions. `folder` holds a dataset ready to publish: `README.md` (the card),
    `datakit.json` (the manifest), `data/*.parquet` and `plots/*.png`."""

    def versions(self, repo: str) -> list[VersionInfo]:
        """Every published version of `repo`, oldest version number first; [] when the repo does not exist."""
        ...

    def publish(self, repo: str, version: str, folder: Path, *, private: bool = False,
                message: str | None = None) -> VersionInfo:
        """Publish `folder` as `version` of `repo` in one step (one commit, then the tag `vX.Y.Z`), creating the
        repo if needed. Raises VersionExistsError when the version exists; on any failure no tag exists."""
        ...

    def fetch(self, repo: str, version: str, to: Path) -> Path:
        """Download exactly that version's files into the folder `to` (created) and return it."""
        ...
