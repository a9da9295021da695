"""The run summary: per-step rows in/out/dropped/failed, time and metrics, gathered from the manifest entries."""

from __future__ import annotations

from typing import Any

from datakit.pipeline.plan import Plan
from datakit.pipeline.shard_task import StepStats


def collect_stats(plan: Plan) -> dict[str, StepStats]:
    """Every step's counts over all its shards. A pure step recomputed in a later pass counts once per shard."""
    totals = {node.id: StepStats() for node in plan.nodes}
    seen: set[tuple[str, int]] = set()
    for node in plan.nodes:
        for table in (node.store.entries, node.store.builds):
            for shard, entry in sorted(table.items()):
                for step_id, data in entry.get("stats", {}).items():
                    if step_id in totals and (step_id, shard) not in seen:
                        seen.add((step_id, shard))
                        totals[step_id].add(StepStats.from_json(data))
    return totals


def build_summary(plan: Plan, published: dict[str, dict[str, Any]], seconds: float, executor: str) -> dict[str, Any]:
    stats = collect_stats(plan)
    steps = []
    for node in plan.nodes:
        s = stats[node.id]
        failed_dir = node.store.root / "failed"
        steps.append({
            "id": node.id, "uses": node.spec.uses, "kind": node.kind, "stored": node.stored,
            "fingerprint": node.fingerprint, **s.to_json(),
            "rows_per_second": round(s.rows_in / s.seconds, 1) if s.seconds > 0 else None,
            "failed_rows": str(failed_dir) if s.failed else None,
        })
    recipe = plan.recipe
    return {"name": recipe.name, "recipe": recipe.path, "run_dir": str(plan.run.root), "executor": executor,
            "seed": recipe.seed, "seconds": round(seconds, 3), "steps": steps, "outputs": published}


def render_summary(summary: dict[str, Any]) -> str:
    """The summary as a table for the terminal."""
    header = ("step", "uses", "in", "out", "dropped", "failed", "seconds")
    rows = [header]
    for s in summary["steps"]:
        dropped = sum(s["dropped"].values())
        rows.append((s["id"], s["uses"], f"{s['in']:,}", f"{s['out']:,}", f"{dropped:,}", f"{s['failed']:,}",
                     f"{s['seconds']:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    for s in summary["steps"]:
        reasons = {k: v for k, v in s["dropped"].items() if v}
        if reasons:
            lines.append(f"  {s['id']} dropped: " + ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items())))
        if s["failed"]:
            lines.append(f"  {s['id']} failed {s['failed']:,} rows; they are in {s['failed_rows']} "
                         "('datakit run --retry-failed' tries them again)")
    for step_id, info in summary["outputs"].items():
        lines.append(f"output of '{step_id}': {info.get('path')} ({info.get('rows', 0):,} rows in "
                     f"{info.get('files', 0)} {info.get('format', '')} files)")
    lines.append(f"run '{summary['name']}' finished in {summary['seconds']:.1f} s; summary: "
                 f"{summary['run_dir']}/summary.json")
    return "\n".join(lines)


def build_manifest(plan: Plan) -> dict[str, Any]:
    """Every step's fingerprint, store and committed shards (file, rows, token)."""
    steps = {}
    for node in plan.nodes:
        store = node.store
        steps[node.id] = {
            "uses": node.spec.uses, "fingerprint": node.fingerprint, "store": str(store.root.relative_to(plan.run.root)),
            "stored": node.stored, "num_shards": store.complete(),
            "shards": [{k: e[k] for k in ("shard", "file", "rows", "token", "failed_file") if k in e}
                       for _, e in sorted(store.entries.items())],
            "index": store.final_entry(),
        }
    return {"name": plan.recipe.name, "steps": steps}
