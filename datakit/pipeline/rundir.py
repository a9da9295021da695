"""The run directory: per-step stores of shard outputs, their manifest entries, failed rows and indexes.

```
<run>/run.json                       the recipe as run, settings, status
<run>/summary.json                   per-step counts and times of the last run
<run>/manifest.json                  every step's fingerprint, shards and files (written at the end)
<run>/steps/<id>/<fingerprint>/
    entries/shard-00000.json         manifest entry: written last, so a shard counts only once whole
    data/shard-00000.parquet         the step's output rows (stored steps only)
    failed/shard-00000.parquet       rows the step failed, with the error
    build/shard-00000.json           global steps: entry for an index part
    index/parts/00000/ index/final/  global steps: the index
    complete.json                    the number of shards, once every shard is done
<run>/output/<id>/                   what sinks publish by default
```

Every file is written to a temp name, fsynced and renamed, and the entry comes after the data it
vouches for: after a crash, a shard either has an entry and whole files, or is redone.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datakit.errors import RunStateError
from datakit.io.writers import _fsync_dir, _temp_name, atomic_write


def write_json(path: Path, data: Any) -> None:
    """Atomically write `data` as JSON."""
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True, default=str)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_parquet(path: Path, table: pa.Table) -> None:
    """Atomically write one Parquet file (zstd)."""
    with atomic_write(path, "wb") as handle:
        pq.write_table(table, handle, compression="zstd")


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class StepStore:
    """One step's folder for one fingerprint: shard outputs, entries, failed rows and index."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries: dict[int, dict[str, Any]] = {}
        self.builds: dict[int, dict[str, Any]] = {}
        self.load()

    def load(self) -> None:
        """Read the entries written so far (a fresh view after another process wrote some)."""
        self.entries = self._read_entries("entries")
        self.builds = self._read_entries("build")

    def load_shard(self, shard: int) -> None:
        """Re-read one shard's entries (cheaper than `load` when another process may have committed it)."""
        name = f"shard-{shard:05d}.json"
        for folder, table in (("entries", self.entries), ("build", self.builds)):
            try:
                table[shard] = read_json(self.root / folder / name)
            except (OSError, ValueError):
                table.pop(shard, None)

    def _read_entries(self, folder: str) -> dict[int, dict[str, Any]]:
        result: dict[int, dict[str, Any]] = {}
        directory = self.root / folder
        if not directory.is_dir():
            return result
        for name in os.listdir(directory):
            if name.startswith("shard-") and name.endswith(".json"):
                with contextlib.suppress(ValueError, OSError):
                    result[int(name[6:-5])] = read_json(directory / name)
        return result

    def failed_path(self, shard: int) -> Path:
        return self.root / "failed" / f"shard-{shard:05d}.parquet"

    @property
    def index_root(self) -> Path:
        return self.root / "index"

    def ensure(self) -> None:
        for sub in ("entries", "data", "failed", "build"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def commit(self, shard: int, entry: dict[str, Any], folder: str = "entries") -> dict[str, Any]:
        """Record a shard as done; the entry gets a fresh token that names this version of the shard."""
        entry = {**entry, "shard": shard, "token": secrets.token_hex(8), "at": now()}
        write_json(self.root / folder / f"shard-{shard:05d}.json", entry)
        (self.entries if folder == "entries" else self.builds)[shard] = entry
        return entry

    def forget(self, shard: int | None = None) -> None:
        """Drop entries (one shard's, or all) and the completion marker, so the shards are redone."""
        self.complete_path.unlink(missing_ok=True)
        for folder, table in (("entries", self.entries), ("build", self.builds)):
            shards = list(table) if shard is None else [shard]
            for k in shards:
                (self.root / folder / f"shard-{k:05d}.json").unlink(missing_ok=True)
                table.pop(k, None)
        if shard is None:
            shutil.rmtree(self.index_root / "final", ignore_errors=True)
            (self.root / "final.json").unlink(missing_ok=True)

    @property
    def complete_path(self) -> Path:
        return self.root / "complete.json"

    def complete(self) -> int | None:
        """The number of shards if every one is done, else None."""
        try:
            return int(read_json(self.complete_path)["num_shards"])
        except (OSError, ValueError, KeyError):
            return None

    def mark_complete(self, num_shards: int) -> None:
        write_json(self.complete_path, {"num_shards": num_shards, "at": now()})

    def final_entry(self) -> dict[str, Any] | None:
        try:
            return read_json(self.root / "final.json")
        except (OSError, ValueError):
            return None

    def commit_final(self, num_shards: int) -> None:
        write_json(self.root / "final.json", {"num_shards": num_shards, "token": secrets.token_hex(8), "at": now()})


def install_dir(temp: Path, target: Path) -> None:
    """Move a finished temp folder into place, replacing a leftover from an attempt that never committed."""
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, target)
    _fsync_dir(target.parent)


def temp_dir_for(target: Path) -> Path:
    """A fresh hidden folder beside `target`, for building its content before `install_dir`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.parent / _temp_name(target.name)
    path.mkdir()
    return path


class RunDir:
    """A run's directory, locked for the lifetime of one `datakit run`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._lock_handle: Any = None

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    def info(self) -> dict[str, Any] | None:
        try:
            return read_json(self.run_json)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RunStateError(f"run record is unreadable: {exc}", path=str(self.run_json)) from None

    def write_info(self, info: dict[str, Any]) -> None:
        write_json(self.run_json, info)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock; a second run on the same folder is refused, a killed one releases it."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / ".lock", "a+")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunStateError("another datakit run is using this run directory", path=str(self.root)) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def store(self, step_id: str, fingerprint: str) -> StepStore:
        return StepStore(self.root / "steps" / step_id / fingerprint[:16])

    def clear(self) -> None:
        """Remove everything a previous run left (for --overwrite)."""
        for name in ("steps", "output", "summary.json", "manifest.json", "run.json"):
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
