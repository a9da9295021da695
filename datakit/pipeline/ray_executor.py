"""The Ray executor: a plan's passes computed shard by shard by a pool of Ray Data actors.

How one pass runs:

1. The driver reads the source and cuts it into shards as the local executor does, and commits
   every source shard that is not stored yet (under Ray the source is a stored step), so that
   workers on any node read their rows from the run directory.
2. The shards whose targets still lack an entry become a dataset of shard descriptors, mapped with
   `batch_size=1` over a fixed pool of actors. Each actor builds the plan once from the pickled
   recipe, then runs a `ShardTask` per descriptor, which commits the shard's stored outputs and
   index parts exactly as it does under the local executor. Shards already committed are never
   handed out, so a resumed run only does what is left.
3. The driver re-reads the stores, marks the pass's outputs complete, finishes the indexes built in
   it and publishes its sinks, as the local executor does.

The actors of a pass ask for resources over the steps they run in it (each step's class
`resources`, overridden key by key by its recipe `resources:`):

- `num_cpus`: the largest asked (default 1); `num_gpus`: the largest asked (default 0);
  `memory` (bytes): the largest asked (default: none reserved).
- actors: the smallest `concurrency` asked; by default as many as the cluster's CPUs hold at
  `num_cpus` each (and its GPUs at `num_gpus` each, when the pass takes GPUs); at least 1 and never
  more than there are shards to compute.

The run directory must be on storage that every node sees, and every node must be able to import
datakit and the recipe's step classes. Only the driver reads the input files (workers take the
sources' fingerprints from it); a worker that computes another fingerprint than the driver for any
other step (other code or library versions) refuses to run.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import sys
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from datakit.errors import DatakitError, StepError, UsageError
from datakit.pipeline.execution import close_pass, cut_shards, pass_done, publish_sinks
from datakit.pipeline.plan import Node, Pass, Plan, build_plan
from datakit.pipeline.recipe import Recipe
from datakit.pipeline.rundir import RunDir
from datakit.pipeline.shard_task import ShardTask, StepRuntime


class RayExecutor:
    """Runs a plan's passes on a Ray cluster: the one Ray is connected to, else `address`, else a new local one."""

    def __init__(self, plan: Plan, address: str | None = None, progress: bool = False) -> None:
        if not all(root.stored for root in plan.roots):
            raise UsageError("the Ray executor runs plans built with store_sources=True")
        self.plan = plan
        self.address = address
        self.progress = progress
        self.runtime = StepRuntime()

    def run(self) -> dict[str, dict[str, Any]]:
        """Run every pass of every tree; return what each sink published, by step id."""
        try:
            import ray
        except ImportError:
            raise UsageError("the ray executor needs Ray: pip install 'datakit[ray]'") from None

        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, include_dashboard=False, ignore_reinit_error=True)
        try:
            published: dict[str, dict[str, Any]] = {}
            for root in self.plan.roots:
                for pass_ in self.plan.passes(root):
                    published.update(self.run_pass(pass_))
            return published
        finally:
            if started:
                ray.shutdown()

    def run_pass(self, pass_: Pass) -> dict[str, dict[str, Any]]:
        """Compute what the pass still lacks, finish it, and publish its sinks (again only if their shards changed)."""
        root = pass_.root
        if not pass_done(pass_):
            from tqdm import tqdm

            bar = tqdm(desc=f"pass {pass_.level + 1} ({root.id})", unit=" shards", file=sys.stderr,
                       dynamic_ncols=True, disable=not self.progress)
            try:
                count = self._store_source(pass_, bar)
                self._compute(pass_, count, bar)
            finally:
                bar.close()
            close_pass(pass_, count)
        return publish_sinks(pass_)

    def _store_source(self, pass_: Pass, bar: Any) -> int:
        """Commit the source shards not stored yet (the first pass only); return the number of shards."""
        root = pass_.root
        store = root.store
        count = store.complete()
        if root in pass_.outputs and (count is None or any(k not in store.entries for k in range(count))):
            bar.set_postfix_str("storing the source")
            for shard, batch in cut_shards(root, self.plan.recipe.shard_rows):
                if shard not in store.entries:
                    ShardTask(self.plan, pass_, shard, batch, [root], [], self.runtime).run()
                bar.update(1)
            bar.set_postfix_str("")
            count = store.complete()
        assert count is not None  # the first pass stores the whole source before any later pass runs
        return count

    def _compute(self, pass_: Pass, count: int, bar: Any) -> None:
        """Compute the pass's missing targets on Ray, one actor call per shard; then re-read their stores."""
        todo = [k for k in range(count) if any(shard_targets(pass_, k))]
        if not todo:
            return
        import ray

        resources = stage_resources(computed_nodes(pass_), ray.cluster_resources(), len(todo))
        bar.reset(total=len(todo))
        done: set[int] = set()
        rows = 0
        # A step's own exception travels to the driver only when Ray Data does not wrap it: the
        # wrapper it uses otherwise loses the original on the way.
        with _data_context(raise_original_map_exception=True, enable_progress_bars=False,
                           print_on_execution_start=False):
            dataset = ray.data.from_items([{"shard": k} for k in todo]).map_batches(
                ShardWorker,
                batch_size=1,
                batch_format="pyarrow",
                # One shard running and one waiting per actor: no idle gap, no long queue behind a slow actor.
                compute=ray.data.ActorPoolStrategy(size=resources["size"], max_tasks_in_flight_per_actor=2),
                num_cpus=resources["num_cpus"],
                num_gpus=resources["num_gpus"],
                memory=resources["memory"],
                fn_constructor_kwargs={
                    "recipe": self.plan.recipe,
                    "run_root": str(self.plan.run.root.resolve()),
                    "fingerprints": {n.id: n.fingerprint for n in self.plan.nodes},
                    "root_id": pass_.root.id,
                    "level": pass_.level,
                },
            )
            failures: dict[int, DatakitError] = {}
            try:
                for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                    columns = (batch["shard"].to_pylist(), batch["stats"].to_pylist(), batch["error"].to_pylist())
                    for shard, stats, error in zip(*columns, strict=True):
                        done.add(shard)
                        if error is not None:
                            failures[shard] = pickle.loads(error)
                            continue
                        rows += sum(json.loads(stats).get(n.id, {}).get("out", 0) for n in pass_.outputs)
                        bar.update(1)
                        if rows:
                            bar.set_postfix_str(f"{rows:,} rows stored")
            except Exception as exc:
                cause = datakit_cause(exc)
                if cause is None:
                    raise
                raise cause from None
        for node in pass_.targets:
            node.store.load()
        if failures:
            # The other shards ran to the end and are committed, so a resumed run starts past them.
            raise failures[min(failures)]
        lost = sorted(set(todo) - done)
        if lost:
            raise StepError(f"Ray returned no result for shards {lost[:10]} of pass {pass_.level + 1}; run again "
                            "with --resume to compute them")


class ShardWorker:
    """A Ray Data actor: builds the plan once, then computes and commits each shard it is handed."""

    def __init__(self, recipe: Recipe, run_root: str, fingerprints: dict[str, str], root_id: str, level: int) -> None:
        # An exception raised here would kill the actor and reach the driver as a bare ActorDiedError;
        # raising it from the first call instead lets it arrive as the datakit error it is.
        self.error: Exception | None = None
        self.runtime = StepRuntime()
        try:
            sources = {step.id: fingerprints[step.id] for step in recipe.steps if step.input is None}
            self.plan = build_plan(recipe, RunDir(run_root), store_sources=True, source_fingerprints=sources)
            changed = [n.id for n in self.plan.nodes if fingerprints.get(n.id) != n.fingerprint]
            if changed:
                raise StepError(f"a Ray worker sees other code or library versions than the driver for steps "
                                f"{', '.join(changed)} (their fingerprints differ); install the same versions "
                                "on every node")
            root = self.plan.node(root_id)
            self.pass_ = next(p for p in self.plan.passes(root) if p.level == level)
        except Exception as exc:
            self.error = exc

    def __call__(self, batch: pa.Table) -> pa.Table:
        # datakit errors come back as data rather than as exceptions: Ray Data aborting a dataset on an
        # exception keeps its actors (and their CPUs and GPUs) for a while, which stalls the next run.
        shards = batch.column("shard").to_pylist()
        stats, errors = [], []
        for shard in shards:
            try:
                if self.error is not None:
                    raise self.error
                stats.append(json.dumps(self.compute(shard)))
                errors.append(None)
            except DatakitError as exc:
                stats.append("{}")
                errors.append(pickle.dumps(exc))
        return pa.table({"shard": pa.array(shards, pa.int64()), "stats": pa.array(stats, pa.string()),
                         "error": pa.array(errors, pa.binary())})

    def compute(self, shard: int) -> dict[str, Any]:
        """Compute and commit one shard's missing targets; return the stats of the steps run."""
        # An actor that died mid-shard may have committed some of its outputs before Ray handed the
        # shard to this one; those must be read back, not computed again.
        for node in self.pass_.targets:
            node.store.load_shard(shard)
        outputs, builds = shard_targets(self.pass_, shard)
        task = ShardTask(self.plan, self.pass_, shard, None, outputs, builds, self.runtime)
        return {step_id: stats.to_json() for step_id, stats in task.run().items()}


def shard_targets(pass_: Pass, shard: int) -> tuple[list[Node], list[Node]]:
    """The stored outputs and index parts of a pass that one shard still lacks (the source is the driver's)."""
    outputs = [n for n in pass_.outputs if n is not pass_.root and shard not in n.store.entries]
    builds = [n for n in pass_.builds if shard not in n.store.builds]
    return outputs, builds


def computed_nodes(pass_: Pass) -> list[Node]:
    """The steps the workers run in a pass: its targets and the unstored steps between them and stored rows."""
    found: list[Node] = []

    def climb(node: Node | None) -> None:
        while node is not None and node not in found and node.kind != "source":
            if node.stored and node not in pass_.outputs:
                return  # read from its store
            found.append(node)
            if node.kind == "global" and not node.step.apply_needs_input:  # type: ignore[attr-defined]
                return
            node = node.input

    for node in pass_.outputs:
        climb(node)
    for node in pass_.builds:
        if node not in found:
            found.append(node)
        climb(node.input)
    return found


def stage_resources(nodes: list[Node], cluster: dict[str, float], shards: int) -> dict[str, Any]:
    """Per-actor resources and pool size for steps run together (the rule is in the module docstring)."""
    asked = [{**node.step.resources, **node.spec.resources} for node in nodes]

    def given(key: str) -> list[float]:
        return [float(a[key]) for a in asked if key in a]

    num_cpus = max(given("num_cpus"), default=1.0)
    num_gpus = max(given("num_gpus"), default=0.0)
    memory = max(given("memory"), default=None)
    concurrency = min(given("concurrency"), default=None)
    if concurrency is None:
        fits = [float(shards)]
        if num_cpus > 0:
            fits.append(cluster.get("CPU", 1.0) / num_cpus)
        if num_gpus > 0:
            fits.append(cluster.get("GPU", 0.0) / num_gpus)
        concurrency = min(fits)
    size = max(1, min(int(concurrency), shards))
    return {"size": size, "num_cpus": num_cpus, "num_gpus": num_gpus, "memory": memory}


def datakit_cause(exc: BaseException) -> DatakitError | None:
    """The datakit error a Ray exception carries from a worker, if any, with its message as raised."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        remote = getattr(current, "cause", None)  # RayTaskError: the exception raised in the worker
        if isinstance(remote, BaseException):
            current = remote
            continue
        if isinstance(current, DatakitError):
            current.args = (current.message,)  # Ray Data appends its retry note to the first argument
            return current
        current = current.__cause__
    return None


@contextlib.contextmanager
def _data_context(**settings: Any) -> Iterator[None]:
    """Change Ray Data's settings in this process for a while, then put them back."""
    import ray

    context = ray.data.DataContext.get_current()
    saved = {key: getattr(context, key) for key in settings}
    for key, value in settings.items():
        setattr(context, key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(context, key, value)
