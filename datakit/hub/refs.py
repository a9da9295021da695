"""Dataset references (`org/name@1.2.0`) and choosing a registry: the local directory (default) or the Hub."""

from __future__ import annotations

import os
from dataclasses import dataclass

from datakit.errors import UsageError
from datakit.hub.registry import REPO, VERSION, Registry

REF_HINT = "write a dataset version as org/name@X.Y.Z, e.g. acme/chat-sft@1.0.0"


@dataclass(frozen=True)
class DatasetRef:
    """One version of one repository."""

    repo: str
    version: str

    def __str__(self) -> str:
        return f"{self.repo}@{self.version}"


def parse_ref(text: str) -> DatasetRef:
    """Parse `org/name@X.Y.Z` (or `@vX.Y.Z`); anything else is a UsageError with a hint."""
    repo, sep, version = text.partition("@")
    version = version[1:] if version.startswith("v") else version
    if not sep or not REPO.match(repo) or not VERSION.match(version):
        raise UsageError(f"bad dataset reference '{text}': {REF_HINT}")
    return DatasetRef(repo, version)


def check_repo(text: str) -> str:
    """Check a bare repository name `org/name`."""
    if not REPO.match(text):
        raise UsageError(f"bad repository '{text}': write it as org/name, e.g. acme/chat-sft")
    return text


def open_registry(spec: str | os.PathLike[str] | Registry | None = None) -> Registry:
    """The registry `spec` names: None for the default local registry, "hub" for the Hugging Face Hub (the
    huggingface_hub client's endpoint and token settings apply), a path for a local registry there, or a
    Registry object as it is."""
    from datakit.hub.local_registry import LocalRegistry

    if spec is None:
        return LocalRegistry()
    if isinstance(spec, str | os.PathLike):
        if os.fspath(spec) == "hub":
            from datakit.hub.hub_registry import HubRegistry

            return HubRegistry()
        return LocalRegistry(spec)
    return spec
