"""The Registry protocol on the Hugging Face Hub: a version is one commit of a dataset repo plus its tag `vX.Y.Z`.

Publishing makes ONE commit holding every file of the staged folder (the client uploads large and binary files
through LFS) and removing files of the previous head that the folder no longer has, so the tagged commit holds
exactly the folder (plus the `.gitattributes` the Hub adds itself). The commit names the head it builds on
(`parent_commit`), so a concurrent push makes it fail instead of mixing two datasets. Only then is the tag created:
a failed commit leaves no tag, and a failed tag leaves an untagged commit, which is not a version.

Tokens come from the argument, else from wherever `huggingface_hub` finds them (`HF_TOKEN`, `hf auth login`). They
are never part of what this module logs or raises: client errors become `RegistryError`s whose text is redacted.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from datakit.errors import InputError, UsageError
from datakit.hub.manifest import check_repo_version
from datakit.hub.registry import (
    MANIFEST,
    RegistryError,
    VersionExistsError,
    VersionInfo,
    VersionNotFoundError,
    version_key,
)

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
_TAG = re.compile(r"^v(\d+\.\d+\.\d+)$")
_HUB_FILES = (".gitattributes",)  # files the Hub adds to every repo: never deleted on publish, not fetched
# Anything shaped like a Hub token, redacted from error text even when it is not the token in use.
_TOKEN_SHAPE = re.compile(r"\bhf_[A-Za-z0-9]{8,}\b")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")


def _describe(exc: BaseException) -> str:
    """The exception's text with its causes' (the client wraps upload failures), type named for unclear ones."""
    parts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).strip() or type(current).__name__
        parts.append(text if text not in parts else "")
        current = current.__cause__ or current.__context__
    return " <- ".join(p for p in parts if p)


class HubRegistry:
    """Dataset versions on the Hugging Face Hub (or any server speaking its API, such as `datakit.testing.HubServer`).

    `endpoint`: the Hub's URL (default: `HF_ENDPOINT`, else https://huggingface.co). `token`: a Hub token (default:
    the one `huggingface_hub` resolves itself).
    """

    def __init__(self, endpoint: str | None = None, token: str | None = None) -> None:
        from huggingface_hub import HfApi

        from datakit import __version__

        self._api = HfApi(endpoint=endpoint, token=token, library_name="datakit", library_version=__version__)
        self.endpoint = self._api.endpoint
        self._token = token

    def __repr__(self) -> str:  # never shows the token
        return f"HubRegistry({self.endpoint!r})"

    def __str__(self) -> str:
        return self.endpoint

    # -- errors ------------------------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        from huggingface_hub import get_token

        for secret in {self._token, get_token()}:
            if secret:
                text = text.replace(secret, "***")
        return _BEARER.sub(r"\1***", _TOKEN_SHAPE.sub("hf_***", text))

    @contextmanager
    def _client(self, doing: str) -> Iterator[None]:
        """Turn any failure of the Hub client into a RegistryError saying what was being done, token redacted.

        The client's exception is not chained (`from None`): its request object carries the Authorization header,
        and tracebacks must not lead there."""
        try:
            yield
        except RegistryError:
            raise
        except Exception as exc:  # the client raises HTTP, OS, value and runtime errors alike: all are failures
            raise RegistryError(self._redact(f"{doing} on {self.endpoint} failed: {_describe(exc)}")) from None

    # -- reading -----------------------------------------------------------------------------------------------

    def _tags(self, repo: str) -> dict[str, str] | None:
        """Version -> commit id of every `vX.Y.Z` tag; None when the repo does not exist (or is not visible)."""
        from huggingface_hub.errors import RepositoryNotFoundError

        with self._client(f"listing the tags of {repo}"):
            try:
                refs = self._api.list_repo_refs(repo, repo_type=REPO_TYPE)
            except RepositoryNotFoundError:
                return None
        return {m.group(1): ref.target_commit for ref in refs.tags if (m := _TAG.match(ref.name))}

    def _manifest(self, repo: str, revision: str) -> dict[str, Any] | None:
        """The `datakit.json` of one commit (None when that commit has none), read through a temporary folder."""
        from huggingface_hub.errors import EntryNotFoundError

        with tempfile.TemporaryDirectory(prefix="datakit-manifest-") as tmp:
            with self._client(f"reading {MANIFEST} of {repo} at {revision}"):
                try:
                    path = self._api.hf_hub_download(repo, MANIFEST, repo_type=REPO_TYPE, revision=revision,
                                                      local_dir=tmp)
                except EntryNotFoundError:
                    return None
            try:
                return json.loads(Path(path).read_text(encoding="utf-8"))
            except ValueError as exc:
                raise RegistryError(f"{MANIFEST} of {repo} at {revision} is not valid JSON: {exc}") from None

    def versions(self, repo: str) -> list[VersionInfo]:
        """Every `vX.Y.Z` tag of the dataset repo `repo`, oldest version number first, with the rows and creation
        time its `datakit.json` records; [] when the repo does not exist."""
        check_repo_version(repo, "0.0.0")
        tags = self._tags(repo) or {}
        found = []
        for version, revision in tags.items():
            manifest = self._manifest(repo, revision) or {}
            found.append(VersionInfo(repo, version, revision, manifest.get("rows"), manifest.get("created")))
        return sorted(found, key=lambda info: version_key(info.version))

    # -- publishing --------------------------------------------------------------------------------------------

    def publish(self, repo: str, version: str, folder: Path, *, private: bool = False,
                message: str | None = None) -> VersionInfo:
        """Publish `folder` as `version` of the dataset repo `repo`: one commit with all its files, then the tag.

        The repo is created when missing (`private` applies then; an existing repo keeps its visibility). Raises
        VersionExistsError when the tag exists, RegistryError when the Hub refuses or fails; no tag exists then.
        """
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        version = check_repo_version(repo, version)
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            raise UsageError(f"not a staged dataset folder: {MANIFEST} is missing", path=str(folder))
        tag = f"v{version}"
        if version in (self._tags(repo) or {}):
            raise VersionExistsError(f"{repo}@{version} is already published (tag {tag} exists); versions are "
                                     "immutable, publish a new version number")
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        local = {p.relative_to(folder).as_posix(): p for p in files}
        with self._client(f"creating the dataset repo {repo}"):
            self._api.create_repo(repo, repo_type=REPO_TYPE, private=private, exist_ok=True)
        with self._client(f"reading the head of {repo}"):
            head = self._api.repo_info(repo, repo_type=REPO_TYPE, revision="main")
        stale = sorted(s.rfilename for s in head.siblings or []
                       if s.rfilename not in local and s.rfilename not in _HUB_FILES)
        operations: list[Any] = [CommitOperationDelete(path) for path in stale]
        operations += [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(source))
                       for path, source in local.items()]
        summary = message or f"Publish {repo} {tag}"
        logger.info("publishing %s %s: %d files, %d removed, on %s", repo, tag, len(local), len(stale), self.endpoint)
        with self._client(f"committing {repo} {tag} (no version was published)"):
            commit = self._api.create_commit(repo, operations, commit_message=summary, repo_type=REPO_TYPE,
                                             parent_commit=head.sha)
        try:
            with self._client(f"tagging commit {commit.oid} of {repo} as {tag}"):
                self._api.create_tag(repo, tag=tag, revision=commit.oid, tag_message=summary, repo_type=REPO_TYPE)
        except RegistryError as err:
            raise RegistryError(f"{err.message}. The commit {commit.oid} exists untagged, so {repo}@{version} is "
                                "NOT published; if another publisher created the tag meanwhile, check `datakit "
                                "versions`, otherwise publish again") from None
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        logger.info("published %s %s at %s", repo, tag, commit.oid)
        return VersionInfo(repo, version, commit.oid, manifest.get("rows"), manifest.get("created"))

    # -- fetching ----------------------------------------------------------------------------------------------

    def fetch(self, repo: str, version: str, to: Path) -> Path:
        """Download exactly that version's files (at the commit its tag names) into the new or empty folder `to`."""
        version = check_repo_version(repo, version)
        tags = self._tags(repo)
        if tags is None or version not in tags:
            known = ", ".join(sorted(tags or {}, key=version_key)) or "none"
            raise VersionNotFoundError(f"{repo}@{version} is not on {self.endpoint}; versions: {known}")
        to = Path(to)
        if to.exists() and any(to.iterdir()):
            raise InputError("the folder to fetch into must be new or empty", path=str(to))
        to.mkdir(parents=True, exist_ok=True)
        with self._client(f"downloading {repo}@{version}"):
            self._api.snapshot_download(repo, repo_type=REPO_TYPE, revision=tags[version], local_dir=to,
                                        ignore_patterns=list(_HUB_FILES))
        # The client keeps its download bookkeeping in `to/.cache/huggingface`: not part of the dataset.
        shutil.rmtree(to / ".cache" / "huggingface", ignore_errors=True)
        if (to / ".cache").is_dir() and not any((to / ".cache").iterdir()):
            (to / ".cache").rmdir()
        return to
