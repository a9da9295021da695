"""Building generated rows as Arrow: conversations, stable content ids, per-request seeds and provenance."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
CONVERSATION = pa.list_(MESSAGE)
PROVENANCE = pa.struct([
    ("step", pa.string()),
    ("model", pa.string()),
    ("model_revision", pa.string()),
    ("seed", pa.int64()),
    ("params", pa.string()),
])
_SEED_MASK = np.uint64((1 << 63) - 1)


def conversations(values: Iterable[Sequence[Mapping[str, str]]]) -> pa.Array:
    """A list<struct<role, content>> column from Python conversations (the TRL `messages` shape)."""
    return pa.array([[{"role": m["role"], "content": m["content"]} for m in conv] for conv in values],
                    type=CONVERSATION)


def content_id(*parts: Any) -> str:
    """A stable row id: a 128-bit hash of the content that defines the row (JSON-encoded, key order fixed)."""
    text = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def request_seeds(raw: np.ndarray) -> list[int]:
    """Per-row seeds that every engine accepts (non-negative, below 2**63), from `Step.row_seeds` output."""
    return [int(s) for s in (raw.astype(np.uint64) & _SEED_MASK)]


def seed_columns(batch: pa.RecordBatch, *names: str) -> list[str]:
    """The columns a generation step's per-row seed is drawn from: `names` that the batch has.

    Seeds follow what a step reads, never provenance: `metadata` holds model paths and upstream
    settings, which must not change what the same row draws. Without any of `names`, every other column.
    """
    present = [n for n in names if n in batch.schema.names]
    return present or [n for n in batch.schema.names if n != "metadata"]


def turn_seed(seed: int, turn: int, role: str) -> int:
    """A distinct seed for each turn and role of one row, derived from the row's seed."""
    digest = hashlib.blake2b(f"{seed}:{turn}:{role}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def provenance(step_id: str, model: str, revision: str | None, seeds: Sequence[int | None],
               params: Mapping[str, Any], previous: pa.Array | None = None) -> pa.Array:
    """The `metadata` column: this step, its model and each row's seed; `params` (JSON) keeps every step's settings.

    Earlier generation steps' entries in `params` are kept, so a row tells the whole story of how it was made.
    """
    own = {step_id: {"model": model, "revision": revision, **params}}
    earlier: list[dict[str, Any]] = [{} for _ in seeds]
    if previous is not None and pa.types.is_struct(previous.type) and "params" in previous.type.names:
        for i, text in enumerate(previous.field("params").to_pylist()):
            if text:
                try:
                    loaded = json.loads(text)
                except ValueError:
                    loaded = None
                if isinstance(loaded, dict):
                    earlier[i] = loaded
    rows = [{"step": step_id, "model": model, "model_revision": revision, "seed": seed,
             "params": json.dumps({**before, **own}, sort_keys=True)} for seed, before in zip(seeds, earlier)]
    return pa.array(rows, type=PROVENANCE)


def with_columns(base: pa.Table, columns: Mapping[str, pa.Array]) -> pa.Table:
    """`base` with `columns` set: replaced where they exist, appended otherwise."""
    for name, values in columns.items():
        if name in base.column_names:
            base = base.set_column(base.column_names.index(name), name, values)
        else:
            base = base.append_column(name, values)
    return base
