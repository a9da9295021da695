"""`--retry-failed`: run the failed rows of stored steps again, and redo what was built from those shards."""

from __future__ import annotations

import secrets

import pyarrow as pa
import pyarrow.parquet as pq

from datakit.pipeline.plan import Node, Plan
from datakit.pipeline.rundir import write_parquet
from datakit.pipeline.shard_task import (
    FAILED_COLUMNS,
    ROW_COLUMN,
    StepRuntime,
    call_step,
    failed_table,
    to_batch,
)


def retry_failed(plan: Plan, runtime: StepRuntime) -> dict[str, dict[str, int]]:
    """Re-attempt every failed row of every stored map step; return retried/recovered counts per step.

    Recovered rows are appended to their shard. Before the new shard version is committed, every
    output built from the old one (downstream shards, and whole indexes of global steps) is
    forgotten, so the run that follows rebuilds them; a crash in between only repeats work.
    """
    report: dict[str, dict[str, int]] = {}
    for node in plan.nodes:
        if node.kind != "map" or not node.stored:
            continue
        retried = recovered = 0
        for shard, entry in sorted(node.store.entries.items()):
            if "failed_file" not in entry:
                continue
            failed = pq.read_table(node.store.root / "failed" / entry["failed_file"])
            rows = failed.column(ROW_COLUMN).combine_chunks()
            inputs = to_batch(failed.drop_columns(list(FAILED_COLUMNS)))
            output, still_failed, stats = call_step(node, shard, inputs, runtime)
            retried += inputs.num_rows
            recovered += inputs.num_rows - len(still_failed)
            if len(still_failed) == inputs.num_rows and not output.num_rows:
                continue
            _forget_downstream(plan, node, shard)
            old = pq.read_table(node.store.root / "data" / entry["file"])
            new = pa.concat_tables([old, pa.Table.from_batches([output])], promote_options="permissive") \
                if output.num_rows else old
            version = secrets.token_hex(4)
            name = f"shard-{shard:05d}.{version}.parquet"
            write_parquet(node.store.root / "data" / name, new)
            new_entry = {k: v for k, v in entry.items() if k not in ("token", "at", "failed_file")}
            new_entry.update(file=name, rows=new.num_rows)
            if still_failed:
                write_parquet(node.store.root / "failed" / name, failed_table(inputs, still_failed, shard, rows))
                new_entry["failed_file"] = name
            mine = dict(new_entry["stats"][node.id])
            mine["out"] += output.num_rows
            mine["failed"] = len(still_failed)
            mine["recovered"] = mine.get("recovered", 0) + inputs.num_rows - len(still_failed)
            new_entry["stats"] = {**new_entry["stats"], node.id: mine}
            node.store.commit(shard, new_entry)
        if retried:
            report[node.id] = {"retried": retried, "recovered": recovered}
    return report


def _forget_downstream(plan: Plan, node: Node, shard: int) -> None:
    """Forget what was built from `node`'s shard: that shard downstream, or everything past a global step."""
    stack = [(c, False) for c in node.consumers]
    while stack:
        current, whole = stack.pop()
        whole = whole or current.kind == "global"
        current.store.forget(None if whole else shard)
        stack.extend((c, whole) for c in current.consumers)
