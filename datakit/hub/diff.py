"""What changed between two dataset versions: columns added, removed or retyped, row counts, and rows by `id`."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from datakit.hub.pull import data_files, pull, read_manifest
from datakit.hub.registry import Registry

EXAMPLES = 5
ID = "id"


@dataclass
class DatasetDiff:
    """The differences from version `a` to version `b`. `added_ids`/`removed_ids` are None when either version
    has no `id` column; the example lists hold the first ids in sorted order."""

    a: str
    b: str
    rows: tuple[int, int]
    fingerprints: tuple[str, str]
    columns_added: list[tuple[str, str]] = field(default_factory=list)  # (name, type)
    columns_removed: list[tuple[str, str]] = field(default_factory=list)
    columns_retyped: list[tuple[str, str, str]] = field(default_factory=list)  # (name, type in a, type in b)
    added_ids: int | None = None
    removed_ids: int | None = None
    added_examples: list[str] = field(default_factory=list)
    removed_examples: list[str] = field(default_factory=list)

    @property
    def same_rows(self) -> bool:
        return self.fingerprints[0] == self.fingerprints[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "rows": {"a": self.rows[0], "b": self.rows[1]},
            "same_rows": self.same_rows,
            "columns": {
                "added": [{"name": n, "type": t} for n, t in self.columns_added],
                "removed": [{"name": n, "type": t} for n, t in self.columns_removed],
                "retyped": [{"name": n, "a": ta, "b": tb} for n, ta, tb in self.columns_retyped],
            },
            "ids": None if self.added_ids is None else {
                "added": self.added_ids, "removed": self.removed_ids,
                "added_examples": self.added_examples, "removed_examples": self.removed_examples,
            },
        }

    def render(self) -> str:
        """A short text report."""
        lines = [f"{self.a} -> {self.b}",
                 f"rows: {self.rows[0]:,} -> {self.rows[1]:,} ({self.rows[1] - self.rows[0]:+,})"
                 + ("; same rows (equal fingerprints)" if self.same_rows else "")]
        if not (self.columns_added or self.columns_removed or self.columns_retyped):
            lines.append("columns: unchanged")
        lines += [f"column added: {n} ({t})" for n, t in self.columns_added]
        lines += [f"column removed: {n} ({t})" for n, t in self.columns_removed]
        lines += [f"column retyped: {n}: {ta} -> {tb}" for n, ta, tb in self.columns_retyped]
        if self.added_ids is None:
            lines.append(f"rows by id: not compared (both versions need an '{ID}' column)")
        else:
            lines.append(f"ids added: {self.added_ids:,}" + _examples(self.added_examples, self.added_ids))
            lines.append(f"ids removed: {self.removed_ids:,}" + _examples(self.removed_examples, self.removed_ids))
        return "\n".join(lines)


def _examples(examples: list[str], total: int) -> str:
    if not examples:
        return ""
    return " (e.g. " + ", ".join(examples) + (", ..." if total > len(examples) else "") + ")"


def _columns(folder: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in data_files(folder)]
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    return {f.name: str(f.type) for f in schema}


def _ids(folder: Path) -> Any:
    import polars as pl

    return pl.scan_parquet([str(p) for p in data_files(folder)]).select(pl.col(ID).cast(pl.String)).unique()


def diff_folders(a: str | os.PathLike[str], b: str | os.PathLike[str], *, label_a: str | None = None,
                 label_b: str | None = None, examples: int = EXAMPLES) -> DatasetDiff:
    """Compare two dataset folders (as pulled): columns by name and Arrow type, row counts, and ids."""
    a, b = Path(a), Path(b)
    manifest_a, manifest_b = read_manifest(a), read_manifest(b)
    result = DatasetDiff(label_a or str(a), label_b or str(b), (manifest_a["rows"], manifest_b["rows"]),
                         (manifest_a["fingerprint"], manifest_b["fingerprint"]))
    cols_a, cols_b = _columns(a), _columns(b)
    result.columns_added = [(n, t) for n, t in cols_b.items() if n not in cols_a]
    result.columns_removed = [(n, t) for n, t in cols_a.items() if n not in cols_b]
    result.columns_retyped = [(n, cols_a[n], t) for n, t in cols_b.items() if n in cols_a and cols_a[n] != t]
    if ID in cols_a and ID in cols_b:
        ids_a, ids_b = _ids(a), _ids(b)
        added = ids_b.join(ids_a, on=ID, how="anti").sort(ID).collect()
        removed = ids_a.join(ids_b, on=ID, how="anti").sort(ID).collect()
        result.added_ids, result.removed_ids = added.height, removed.height
        result.added_examples = added.head(examples).get_column(ID).to_list()
        result.removed_examples = removed.head(examples).get_column(ID).to_list()
    return result


def diff(a: str, b: str, *, registry: str | os.PathLike[str] | Registry | None = None,
         examples: int = EXAMPLES) -> DatasetDiff:
    """Compare two published versions (`org/name@1.0.0`, `org/name@1.1.0`), pulled and verified into temp folders.

    The repositories may differ. Example: `print(diff("acme/sft@1.0.0", "acme/sft@1.1.0").render())`.
    """
    with tempfile.TemporaryDirectory(prefix="datakit-diff-") as temp:
        folder_a = pull(a, to=Path(temp) / "a", registry=registry)
        folder_b = pull(b, to=Path(temp) / "b", registry=registry)
        return diff_folders(folder_a, folder_b, label_a=a, label_b=b, examples=examples)
