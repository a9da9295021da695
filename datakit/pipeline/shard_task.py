"""Computing one shard of one pass: run the steps it needs, store what must be stored, count everything.

Both executors use this: the local one on its threads, the Ray one inside its actors. A task
commits each stored output (data, failed rows, then the entry) as soon as it is computed, so an
upstream shard is always committed before anything built from it.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datakit.errors import DatakitError, StepError
from datakit.pipeline.plan import Node, Pass, Plan
from datakit.pipeline.rundir import install_dir, temp_dir_for, write_parquet
from datakit.pipeline.step import Index, MapResult, TransientError

ERROR_COLUMN = "_error"
SHARD_COLUMN = "_shard"
ROW_COLUMN = "_row"
FAILED_COLUMNS = (ERROR_COLUMN, SHARD_COLUMN, ROW_COLUMN)


@dataclass
class StepStats:
    """Counts for one step over some shards."""

    rows_in: int = 0
    rows_out: int = 0
    failed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"in": self.rows_in, "out": self.rows_out, "failed": self.failed, "dropped": self.dropped,
                "seconds": round(self.seconds, 4), "metrics": self.metrics}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepStats:
        return cls(data["in"], data["out"], data["failed"], dict(data["dropped"]), data["seconds"], dict(data["metrics"]))

    def add(self, other: StepStats) -> None:
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.failed += other.failed
        self.seconds += other.seconds
        for k, v in other.dropped.items():
            self.dropped[k] = self.dropped.get(k, 0) + v
        for k, v in other.metrics.items():
            self.metrics[k] = self.metrics.get(k, 0) + v


def to_batch(data: pa.RecordBatch | pa.Table) -> pa.RecordBatch:
    """One record batch holding all rows of `data` (zero rows keep the schema)."""
    if isinstance(data, pa.RecordBatch):
        return data
    if data.num_rows == 0:
        return pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in data.schema], schema=data.schema)
    batches = data.combine_chunks().to_batches()
    return batches[0] if len(batches) == 1 else pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def read_stored(node: Node, shard: int) -> pa.RecordBatch:
    """A stored shard's rows, as committed."""
    entry = node.store.entries[shard]
    return to_batch(pq.read_table(node.store.root / "data" / entry["file"]))


class StepRuntime:
    """Per-process state of the steps: one-time setup and locks for steps that take one caller at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: set[int] = set()
        self._step_locks: dict[int, threading.Lock] = {}

    def prepare(self, node: Node) -> None:
        key = id(node.step)
        if key in self._ready:
            return
        with self._lock:
            if key not in self._ready:
                node.step.setup()
                self._ready.add(key)
                self._step_locks[key] = threading.Lock()

    def guard(self, node: Node) -> threading.Lock | None:
        return None if node.step.thread_safe else self._step_locks[id(node.step)]


class ShardTask:
    """The targets of one pass for one shard; `run()` computes and commits them and returns the step stats."""

    def __init__(
        self,
        plan: Plan,
        pass_: Pass,
        shard: int,
        source_batch: pa.RecordBatch | None,
        outputs: list[Node],
        builds: list[Node],
        runtime: StepRuntime,
        on_rows: Callable[[Node, StepStats], None] | None = None,
    ) -> None:
        self.plan = plan
        self.pass_ = pass_
        self.shard = shard
        self.source_batch = source_batch
        self.outputs = outputs
        self.builds = builds
        self.runtime = runtime
        self.on_rows = on_rows
        self.memo: dict[Node, pa.RecordBatch] = {}
        self.stats: dict[str, StepStats] = {}

    def run(self) -> dict[str, StepStats]:
        for node in self.outputs:
            self.value(node)
        for node in self.builds:
            self._build(node)
        return self.stats

    def value(self, node: Node) -> pa.RecordBatch:
        """The rows `node` outputs for this shard: from memory, from its store, or computed now."""
        if node in self.memo:
            return self.memo[node]
        if node.stored and self.shard in node.store.entries:
            result = read_stored(node, self.shard)
        else:
            result, failed = self._compute(node)
            if node.stored:
                self._commit(node, result, failed)
            elif failed is not None:
                # A pure step fails the same rows every time it runs, so rewriting its failed table is harmless.
                node.store.ensure()
                write_parquet(node.store.failed_path(self.shard), failed)
        self.memo[node] = result
        return result

    def _compute(self, node: Node) -> tuple[pa.RecordBatch, pa.Table | None]:
        kind = node.kind
        if kind == "source":
            if self.source_batch is None:
                raise StepError(f"shard {self.shard} of source '{node.id}' is neither stored nor read in this pass")
            batch = self.source_batch
            self._record(node, StepStats(batch.num_rows, batch.num_rows))
            return batch, None
        upstream = node.input
        assert upstream is not None
        if kind == "sink":
            batch = self.value(upstream)
            self._record(node, StepStats(batch.num_rows, batch.num_rows))
            return batch, None
        if kind == "global" and not node.step.apply_needs_input:  # type: ignore[attr-defined]
            batch = None
        else:
            batch = self.value(upstream)
        return self._run_step(node, batch)

    def _run_step(self, node: Node, batch: pa.RecordBatch | None) -> tuple[pa.RecordBatch, pa.Table | None]:
        output, failed_rows, stats = call_step(node, self.shard, batch, self.runtime)
        self._record(node, stats)
        failed = failed_table(batch, failed_rows, self.shard) if failed_rows else None
        return output, failed

    def _record(self, node: Node, stats: StepStats) -> None:
        self.stats[node.id] = stats
        if self.on_rows is not None and node.level == self.pass_.level:
            self.on_rows(node, stats)

    def _commit(self, node: Node, batch: pa.RecordBatch, failed: pa.Table | None) -> None:
        store = node.store
        store.ensure()
        name = f"shard-{self.shard:05d}.parquet"
        write_parquet(store.root / "data" / name, pa.Table.from_batches([batch]))
        entry: dict[str, Any] = {"file": name, "rows": batch.num_rows}
        if failed is not None:
            write_parquet(store.root / "failed" / name, failed)
            entry["failed_file"] = name
        else:
            (store.root / "failed" / name).unlink(missing_ok=True)
        entry["stats"] = {k: v.to_json() for k, v in self.stats.items()}
        store.commit(self.shard, entry)

    def _build(self, node: Node) -> None:
        assert node.input is not None
        batch = self.value(node.input)
        self.runtime.prepare(node)
        index = Index(node.store.index_root)
        target = index.part(self.shard)
        temp = temp_dir_for(target)
        started = time.perf_counter()
        guard = self.runtime.guard(node)  # a step that is not thread safe builds one shard at a time too
        try:
            if guard is not None:
                with guard:
                    node.step.build(self.shard, batch, temp)  # type: ignore[attr-defined]
            else:
                node.step.build(self.shard, batch, temp)  # type: ignore[attr-defined]
        except BaseException as exc:
            shutil.rmtree(temp, ignore_errors=True)
            if isinstance(exc, DatakitError) or not isinstance(exc, Exception):
                raise
            raise StepError(f"step '{node.id}' ({node.spec.uses}) broke building its index for shard {self.shard}: "
                            f"{type(exc).__name__}: {exc}") from exc
        install_dir(temp, target)
        node.store.ensure()
        stats = {k: v.to_json() for k, v in self.stats.items()}
        node.store.commit(self.shard, {"stats": stats, "rows": batch.num_rows,
                                       "seconds": round(time.perf_counter() - started, 4)}, folder="build")



def finished_index(node: Node) -> Index:
    """The finished index of a global step."""
    final = node.store.final_entry()
    if final is None:
        raise StepError(f"the index of step '{node.id}' is not finished")
    return Index(node.store.index_root, num_shards=int(final["num_shards"]))


def call_step(
    node: Node, shard: int, batch: pa.RecordBatch | None, runtime: StepRuntime
) -> tuple[pa.RecordBatch, list[tuple[int, str]], StepStats]:
    """Run a map step (or a global step's apply) on one batch with the step's retry policy.

    A transient error that outlasts the retries fails every row of the batch; any other exception
    is a StepError that stops the run, naming the step and shard.
    """
    if node.kind == "map" and batch is not None and batch.num_rows == 0:
        # Nothing to map; the step is not even called, so empty shards cost nothing and break nothing.
        return batch, [], StepStats()
    runtime.prepare(node)
    started = time.perf_counter()
    if node.kind == "global":
        index = finished_index(node)
        call = lambda: node.step.apply(shard, batch, index)  # type: ignore[attr-defined]  # noqa: E731
    else:
        call = lambda: node.step.process(batch)  # type: ignore[attr-defined]  # noqa: E731
    guard = runtime.guard(node)
    rows_in = batch.num_rows if batch is not None else 0
    try:
        if guard is not None:
            with guard:
                raw = node.step.context.retry.call(call)
        else:
            raw = node.step.context.retry.call(call)
    except TransientError as exc:
        assert batch is not None
        raw = MapResult(batch.slice(0, 0), failed=[(i, f"{exc} (after {node.step.context.retry.retries} retries)")
                                                   for i in range(batch.num_rows)])
    except DatakitError:
        raise
    except Exception as exc:
        raise StepError(f"step '{node.id}' ({node.spec.uses}) broke on shard {shard}: "
                        f"{type(exc).__name__}: {exc}") from exc
    result = raw if isinstance(raw, MapResult) else MapResult(raw)
    output = to_batch(result.output)
    failed_rows = [(int(i), str(e)) for i, e in result.failed]
    stats = StepStats(rows_in, output.num_rows, len(failed_rows), dict(result.dropped),
                      time.perf_counter() - started, dict(result.metrics))
    if node.kind == "global" and batch is None:
        stats.rows_in = output.num_rows + sum(stats.dropped.values())
    unexplained = stats.rows_in - stats.rows_out - stats.failed - sum(stats.dropped.values())
    if unexplained > 0:
        stats.dropped[node.spec.uses] = stats.dropped.get(node.spec.uses, 0) + unexplained
    return output, failed_rows, stats


def failed_table(batch: pa.RecordBatch | None, failed: list[tuple[int, str]], shard: int,
                 rows: pa.Array | None = None) -> pa.Table:
    """The failed rows of a batch with their error, shard and row number in the shard's input."""
    positions = pa.array([i for i, _ in failed], type=pa.int64())
    base = pa.Table.from_batches([batch]).take(positions) if batch is not None else pa.table({})
    return (base.append_column(ERROR_COLUMN, pa.array([e for _, e in failed], type=pa.string()))
            .append_column(SHARD_COLUMN, pa.array([shard] * len(failed), type=pa.int64()))
            .append_column(ROW_COLUMN, positions if rows is None else rows.take(positions)))
