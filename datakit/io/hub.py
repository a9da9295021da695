"""Hugging Face Hub dataset references: parsing `hf://` and `org/name` refs, listing their files."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from datakit.errors import InputError
from datakit.io._common import short_message

HF_PREFIX = "hf://datasets/"

# A bare ref like `org/name` or `org/name@rev`; only used when no local path of that name exists.
_BARE_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
# Hub revisions that themselves contain slashes; any other revision ends at the next slash.
_SLASHED_REVISION_RE = re.compile(r"^(refs/pr/\d+|refs/convert/[\w.-]+)(/|$)")


@dataclass(frozen=True)
class HubRef:
    """A dataset repository on the Hub, an optional revision and an optional path inside the repo."""

    repo_id: str
    revision: str | None = None
    path_in_repo: str = ""

    def display(self, relative: str = "") -> str:
        """The `hf://datasets/org/name[@rev][/path]` form used in messages and `DataFile.path`."""
        root = HF_PREFIX + self.repo_id + (f"@{self.revision}" if self.revision else "")
        inner = "/".join(part for part in (self.path_in_repo, relative) if part)
        return f"{root}/{inner}" if inner else root


def looks_like_repo_id(ref: str) -> bool:
    """Whether a bare string has the shape of `org/name[@revision]`."""
    return _BARE_REPO_RE.match(ref) is not None


def parse_hub_ref(ref: str) -> HubRef:
    """Split `hf://datasets/org/name[@rev][/path]` or bare `org/name[@rev]` into its parts.

    Raises InputError for strings that are neither form.
    """
    if ref.startswith(HF_PREFIX):
        return _parse_hf_url(ref)
    if looks_like_repo_id(ref):
        repo_id, _, revision = ref.partition("@")
        return HubRef(repo_id=repo_id, revision=revision or None)
    raise InputError(
        "not a Hub dataset reference (expected hf://datasets/org/name[@revision][/path] or org/name)",
        path=ref,
    )


def _parse_hf_url(ref: str) -> HubRef:
    body = ref[len(HF_PREFIX) :].strip("/")
    parts = body.split("/", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise InputError("a Hub dataset reference needs an org and a name: hf://datasets/org/name", path=ref)
    org, name_and_rev = parts[0], parts[1]
    rest = parts[2] if len(parts) > 2 else ""
    name, at, revision = name_and_rev.partition("@")
    if at:
        # The revision began in the second segment; `refs/...` revisions continue into `rest`.
        joined = f"{revision}/{rest}" if rest else revision
        slashed = _SLASHED_REVISION_RE.match(joined)
        if slashed:
            revision = slashed.group(1)
            rest = joined[slashed.end() :]
        if not revision:
            raise InputError("empty revision after '@'", path=ref)
    repo_id = f"{org}/{name}"
    if not _BARE_REPO_RE.match(repo_id):
        raise InputError(f"'{repo_id}' is not a valid Hub repository id", path=ref)
    return HubRef(repo_id=repo_id, revision=revision or None, path_in_repo=rest.strip("/"))


@dataclass(frozen=True)
class HubEntry:
    """One file found under a Hub ref."""

    relative: str  # path under the ref; "" when the ref names the file itself
    name: str  # the file's path in the repository, whose suffix tells its format
    size: int | None
    opener: Callable[[], BinaryIO]


def list_hub_files(ref: str, hub: HubRef) -> list[HubEntry]:
    """List the files under a Hub ref, sorted by path.

    Any failure of the Hub client (offline, not found, no access) becomes an InputError that says
    the ref is not a local path and what the Hub answered.
    """
    # Imported here so that `import datakit.io` stays free of the Hub client.
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem()
    root = f"datasets/{hub.repo_id}" + (f"/{hub.path_in_repo}" if hub.path_in_repo else "")
    try:
        resolved = fs.resolve_path(root, revision=hub.revision)
        found = fs.find(root, revision=hub.revision, detail=True)
    except Exception as exc:  # the Hub client raises many unrelated types; all mean "cannot use it"
        raise InputError(
            f"not a local path, and the Hugging Face Hub could not provide it: {short_message(exc)}", path=ref
        ) from None
    base = resolved.unresolve()
    entries = []
    for name, info in found.items():
        if info.get("type") == "directory":
            continue
        relative = name[len(base) + 1 :] if name.startswith(base + "/") else ""
        opener = functools.partial(fs.open, name, "rb")
        entries.append(HubEntry(relative, name.rsplit("/", 1)[-1], info.get("size"), opener))
    return sorted(entries, key=lambda entry: entry.relative)

