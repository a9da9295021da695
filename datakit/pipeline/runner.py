"""`run`: load a recipe, take the run directory, run every pass, write the summary and manifest."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datakit import __version__
from datakit.errors import RunStateError, UsageError
from datakit.pipeline.plan import Plan, build_plan
from datakit.pipeline.recipe import Recipe, load_recipe
from datakit.pipeline.rundir import RunDir, now, write_json
from datakit.pipeline.summary import build_manifest, build_summary

EXECUTORS = ("local", "ray")


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    summary: dict[str, Any]
    retried: dict[str, dict[str, int]]

    def output(self, step_id: str | None = None) -> Path:
        """Where a sink published its dataset (the only sink when `step_id` is None)."""
        outputs = self.summary["outputs"]
        if step_id is None:
            if len(outputs) != 1:
                raise UsageError(f"the run has {len(outputs)} outputs; name one of: {', '.join(outputs)}")
            step_id = next(iter(outputs))
        return Path(outputs[step_id]["path"])


def run(
    recipe: str | os.PathLike[str] | Recipe,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    profile: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    retry_failed: bool = False,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> RunResult:
    """Run a recipe to the end and return its summary.

    A run directory that holds an interrupted run is only continued with `resume=True` (or wiped
    with `overwrite=True`); a finished one is re-run, reusing every step whose fingerprint is
    unchanged. `retry_failed=True` first re-attempts the rows stored steps failed. `profile` picks
    a named set of overrides from the recipe's `profiles`, applied before `overrides`.
    """
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor '{executor}'; choose one of: {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise UsageError("--address is for the ray executor")
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other")
    checked = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides, profile)
    run_dir = RunDir(checked.output)
    with run_dir.locked():
        info = run_dir.info()
        if overwrite:
            run_dir.clear()
            info = None
        if info is not None and info.get("status") != "finished" and not resume and not retry_failed:
            raise RunStateError(
                f"holds an interrupted run of '{info.get('name')}' (started {info.get('started')}); pass --resume to "
                "continue it or --overwrite to start over", path=str(run_dir.root))
        if info is not None and info.get("name") not in (None, checked.name):
            raise RunStateError(f"belongs to run '{info.get('name')}', not '{checked.name}'; choose another output "
                                "or pass --overwrite", path=str(run_dir.root))
        if resume and info is None:
            print(f"datakit: nothing to resume in {run_dir.root}; starting a new run", file=sys.stderr)
        plan = build_plan(checked, run_dir, store_sources=executor == "ray")
        record = {"name": checked.name, "recipe": checked.path, "document": checked.document, "seed": checked.seed,
                  "datakit": __version__, "executor": executor, "status": "running",
                  "started": info.get("started") if (info and resume) else now(), "updated": now(),
                  "fingerprints": {n.id: n.fingerprint for n in plan.nodes}}
        run_dir.write_info(record)
        started = time.perf_counter()
        retried = _retry(plan) if retry_failed else {}
        published = _execute(plan, executor, address, workers, progress)
        summary = build_summary(plan, published, time.perf_counter() - started, executor)
        if retried:
            summary["retried"] = retried
        write_json(run_dir.root / "summary.json", summary)
        write_json(run_dir.root / "manifest.json", build_manifest(plan))
        run_dir.write_info({**record, "status": "finished", "updated": now()})
    return RunResult(run_dir.root, summary, retried)


def _retry(plan: Plan) -> dict[str, dict[str, int]]:
    from datakit.pipeline.retry import retry_failed
    from datakit.pipeline.shard_task import StepRuntime

    return retry_failed(plan, StepRuntime())


def _execute(plan: Plan, executor: str, address: str | None, workers: int | None, progress: bool) -> dict[str, Any]:
    if executor == "ray":
        from datakit.pipeline.ray_executor import RayExecutor

        return RayExecutor(plan, address=address, progress=progress).run()
    from datakit.pipeline.local import LocalExecutor

    return LocalExecutor(plan, workers=workers, progress=progress).run()
