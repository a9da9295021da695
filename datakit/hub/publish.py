"""Publish a run's output (or a folder of rows) as an immutable dataset version with its manifest and card."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from datakit.hub.manifest import build_manifest, check_repo_version
from datakit.hub.pull import read_manifest
from datakit.hub.refs import open_registry
from datakit.hub.registry import Registry, VersionExistsError, VersionInfo
from datakit.hub.staging import stage


def publish(source: str | os.PathLike[str], repo: str, version: str, *,
            registry: str | os.PathLike[str] | Registry | None = None, private: bool = False,
            message: str | None = None, output: str | None = None, schema: str | None = "auto") -> VersionInfo:
    """Publish `source` (a run directory, or a folder or file of Parquet/JSON Lines rows) as `repo` at `version`.

    The rows are validated, re-cut into Hub-sized shards and published together with `datakit.json` and the
    `README.md` card in one step, then tagged `vX.Y.Z`. `registry` is a Registry, "hub", a local registry's
    folder, or None for the default local registry (`$DATAKIT_REGISTRY`). An existing version is refused
    before any work (VersionExistsError, exit 2); a failure leaves no version behind. Example:
    `publish("runs/demo", "acme/demo-sft", "1.0.0")`.
    """
    version = check_repo_version(repo, version)
    target = open_registry(registry)
    if any(info.version == version for info in target.versions(repo)):
        raise VersionExistsError(f"{repo}@{version} is already published; versions are immutable, "
                                 "publish a new version number")
    staging = Path(tempfile.mkdtemp(prefix="datakit-publish-"))
    try:
        stage(source, staging / "dataset", repo=repo, version=version, output=output, schema=schema)
        return target.publish(repo, version, staging / "dataset", private=private,
                              message=message or f"Publish {repo} {version} with datakit")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def already_published(source: str | os.PathLike[str], repo: str, version: str, *,
                      registry: str | os.PathLike[str] | Registry | None = None, output: str | None = None,
                      schema: str | None = "auto") -> VersionInfo | None:
    """The published `version` of `repo` when it holds exactly the rows of `source` (same content fingerprint),
    None when the version does not exist yet. A version that exists with other rows raises VersionExistsError.

    This is what makes a re-run of a pipeline that ends in a publish (the demo) succeed without breaking
    immutability: nothing is published again, and different rows under a published number are still refused.
    """
    version = check_repo_version(repo, version)
    target = open_registry(registry)
    existing = next((info for info in target.versions(repo) if info.version == version), None)
    if existing is None:
        return None
    fingerprint = build_manifest(source, repo, version, output=output, schema=schema)["fingerprint"]
    with tempfile.TemporaryDirectory(prefix="datakit-published-") as tmp:
        published = read_manifest(target.fetch(repo, version, Path(tmp) / "version"))["fingerprint"]
    if published != fingerprint:
        raise VersionExistsError(f"{repo}@{version} is already published with other rows (fingerprint "
                                 f"{published}, these rows {fingerprint}); versions are immutable, publish a new "
                                 "version number")
    return existing
