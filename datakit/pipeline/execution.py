"""Pass-level work shared by the executors: cutting a source into shards, finishing indexes and sinks."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from datakit.errors import DatakitError, StepError
from datakit.pipeline.plan import Node, Pass
from datakit.pipeline.rundir import install_dir, read_json, temp_dir_for, write_json
from datakit.pipeline.shard_task import to_batch
from datakit.pipeline.step import Index


def cut_shards(node: Node, shard_rows: int) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Read a source and cut its rows into shards of exactly `shard_rows` rows (the last may be shorter).

    Sources yield the same rows in the same order every time, so shard k is the same rows in every
    pass and every run. When the stream ends, the source's store records how many shards there were.
    """
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    shard = 0
    try:
        for batch in node.step.read():  # type: ignore[attr-defined]
            if isinstance(batch, pa.Table):
                batch = to_batch(batch)
            offset = 0
            while offset < batch.num_rows:
                take = min(batch.num_rows - offset, shard_rows - pending_rows)
                pending.append(batch.slice(offset, take))
                pending_rows += take
                offset += take
                if pending_rows == shard_rows:
                    yield shard, _concat(pending)
                    shard += 1
                    pending, pending_rows = [], 0
    except DatakitError:
        raise
    except Exception as exc:
        raise StepError(f"source '{node.id}' ({node.spec.uses}) broke while reading: {type(exc).__name__}: {exc}") from exc
    if pending_rows:
        yield shard, _concat(pending)
        shard += 1
    node.store.ensure()
    node.store.mark_complete(shard)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    tables = [pa.Table.from_batches([b]) for b in batches]
    return to_batch(pa.concat_tables(tables, promote_options="permissive"))


def needs_source(pass_: Pass) -> bool:
    """Whether computing this pass's targets reads rows from the source (rather than stored shards or indexes)."""
    for target in pass_.targets:
        node: Node | None = target.input if target.kind == "global" and target in pass_.builds else target
        while node is not None:
            if node.stored and node.level < pass_.level:
                break
            if node.kind == "global" and not node.step.apply_needs_input:  # type: ignore[attr-defined]
                break
            if node.kind == "source":
                return True
            node = node.input
    return False


def pass_done(pass_: Pass) -> bool:
    """Every target of the pass is complete (and every index built in it is finished)."""
    return all(n.store.complete() is not None for n in pass_.outputs) and all(
        n.store.final_entry() is not None for n in pass_.builds
    )


def finalize_index(node: Node, num_shards: int) -> None:
    """Combine a global step's index parts into its finished index (once; atomically)."""
    store = node.store
    if store.final_entry() is not None:
        return
    index = Index(store.index_root, num_shards=num_shards)
    temp = temp_dir_for(index.final)
    try:
        node.step.finalize(index, temp)  # type: ignore[attr-defined]
    except BaseException as exc:
        shutil.rmtree(temp, ignore_errors=True)
        if isinstance(exc, DatakitError) or not isinstance(exc, Exception):
            raise
        raise StepError(f"step '{node.id}' ({node.spec.uses}) broke finishing its index: {type(exc).__name__}: {exc}") from exc
    install_dir(temp, index.final)
    store.commit_final(num_shards)


def close_pass(pass_: Pass, num_shards: int) -> None:
    """Once every shard of a pass is committed: mark its outputs complete and finish the indexes built in it."""
    for node in pass_.outputs:
        node.store.mark_complete(num_shards)
    for node in pass_.builds:
        finalize_index(node, num_shards)


def publish_sinks(pass_: Pass) -> dict[str, dict]:
    """Publish every sink a finished pass wrote, by step id."""
    count = pass_.root.store.complete()
    assert count is not None
    return {n.id: finish_sink(n, count) for n in pass_.outputs if n.kind == "sink"}


def finish_sink(node: Node, num_shards: int) -> dict:
    """Publish a sink's stored shards, unless exactly these shard versions were published already."""
    store = node.store
    tokens = [store.entries[k]["token"] for k in range(num_shards)]
    key = hashlib.sha256(" ".join(tokens).encode()).hexdigest()
    marker = store.root / "finished.json"
    try:
        previous = read_json(marker)
    except (OSError, ValueError):
        previous = None
    if previous is not None and previous.get("key") == key and Path(previous["info"].get("path", "")).exists():
        return previous["info"]
    paths = [store.root / "data" / store.entries[k]["file"] for k in range(num_shards)]
    info = node.step.finish(paths)  # type: ignore[attr-defined]
    write_json(marker, {"key": key, "info": info})
    return info
