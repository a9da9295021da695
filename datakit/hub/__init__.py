"""Publishing datasets as immutable versions with cards (to the Hugging Face Hub or a local registry), and pulling them.

    from datakit.hub import publish, pull, as_dataset
    publish("runs/demo", "acme/demo-sft", "1.0.0")            # the local registry by default; registry="hub"
    path = pull("acme/demo-sft@1.0.0")                         # checked against its manifest
    rows = as_dataset(path)                                    # a datasets.Dataset (or as_lazyframe: polars)
"""

from datakit.hub.diff import diff
from datakit.hub.local_registry import LocalRegistry
from datakit.hub.publish import already_published, publish
from datakit.hub.pull import as_dataset, as_lazyframe, pull, verify, versions
from datakit.hub.registry import Registry, RegistryError, VersionExistsError, VersionInfo, VersionNotFoundError

__all__ = ["LocalRegistry", "Registry", "RegistryError", "VersionExistsError", "VersionInfo", "VersionNotFoundError",
           "already_published", "as_dataset", "as_lazyframe", "diff", "publish", "pull", "verify", "versions"]
