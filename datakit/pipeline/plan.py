"""From a checked recipe to an executable plan: step instances, fingerprints, which outputs are stored, passes.

A step's fingerprint hashes its name, parameters, code version, its input's fingerprint (and the run
seed for seeded steps, the shard size for sources): a re-run reuses every step whose fingerprint is
unchanged and recomputes a changed step and everything after it.

Outputs are stored for sinks, for steps that are not pure (models, services: never redone once
stored) and for steps marked `persist: true` (the Ray executor also stores sources, since its
workers read shards from shared storage). Pure steps are recomputed where needed, which costs
less than writing and reading their rows again.

Global steps split a tree of steps into passes: pass 0 runs everything up to the first global
steps' build, pass 1 continues from their finished indexes, and so on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from datakit import __version__
from datakit.pipeline.params import as_dict
from datakit.pipeline.recipe import Recipe, StepSpec
from datakit.pipeline.rundir import RunDir, StepStore
from datakit.pipeline.step import Retry, Step, StepContext


@dataclass(eq=False)
class Node:
    """One step of the plan with its place in the graph."""

    spec: StepSpec
    step: Step
    fingerprint: str
    store: StepStore
    input: Node | None
    root: Node  # the source at the top of this node's tree
    level: int  # global steps passed on the way from the source (a global's own output counts it)
    stored: bool
    consumers: list[Node] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def kind(self) -> str:
        return self.step.kind

    def __repr__(self) -> str:
        return f"Node({self.id})"


@dataclass
class Pass:
    """The work of one sweep over a source's shards: stored outputs to write and indexes to build."""

    root: Node
    level: int
    outputs: list[Node]  # stored nodes computed in this pass
    builds: list[Node]  # global nodes whose index parts are built in this pass

    @property
    def targets(self) -> list[Node]:
        return self.outputs + self.builds


@dataclass
class Plan:
    recipe: Recipe
    run: RunDir
    nodes: list[Node]  # recipe order

    def node(self, step_id: str) -> Node:
        return next(n for n in self.nodes if n.id == step_id)

    @property
    def roots(self) -> list[Node]:
        return [n for n in self.nodes if n.input is None]

    def tree(self, root: Node) -> list[Node]:
        return [n for n in self.nodes if n.root is root]

    def passes(self, root: Node) -> list[Pass]:
        tree = self.tree(root)
        top = max((n.level for n in tree), default=0)
        result = []
        for level in range(top + 1):
            outputs = [n for n in tree if n.stored and n.level == level]
            builds = [n for n in tree if n.kind == "global" and n.input is not None and n.input.level == level]
            if outputs or builds:
                result.append(Pass(root, level, outputs, builds))
        return result

    def downstream(self, node: Node) -> list[Node]:
        """Every node fed, directly or not, by `node` (not including it)."""
        result: list[Node] = []
        stack = list(node.consumers)
        while stack:
            current = stack.pop()
            result.append(current)
            stack.extend(current.consumers)
        return result


def fingerprint(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def build_plan(recipe: Recipe, run: RunDir, store_sources: bool = False,
               source_fingerprints: dict[str, str] | None = None) -> Plan:
    """Instantiate every step, give it its fingerprint and store, and work out levels and stored outputs.

    `source_fingerprints` lets a process that never reads the inputs (a Ray worker: the driver stores
    the source shards) take the sources' fingerprints as given instead of listing their files.
    """
    by_id: dict[str, Node] = {}
    nodes: list[Node] = []
    pending = list(recipe.steps)
    # Recipe order may name an input defined further down; resolve in dependency order.
    while pending:
        progressed = False
        for spec in list(pending):
            if spec.input is not None and spec.input not in by_id:
                continue
            node = _make_node(spec, by_id.get(spec.input) if spec.input else None, recipe, run, store_sources,
                              (source_fingerprints or {}).get(spec.id))
            by_id[spec.id] = node
            pending.remove(spec)
            progressed = True
        if not progressed:  # recipe checking refuses cycles, so this cannot happen
            raise RuntimeError("unresolvable step inputs")
    for spec in recipe.steps:
        nodes.append(by_id[spec.id])
    for node in nodes:
        if node.input is not None:
            node.input.consumers.append(node)
    return Plan(recipe, run, nodes)


def _make_node(spec: StepSpec, upstream: Node | None, recipe: Recipe, run: RunDir, store_sources: bool,
               given: str | None) -> Node:
    cls = spec.cls
    retry = Retry(retries=recipe.retries if spec.retries is None else spec.retries, backoff=recipe.retry_backoff)
    # The work folder is per step id (not per fingerprint) so caches survive parameter tweaks.
    context = StepContext(step_id=spec.id, seed=recipe.seed, retry=retry, run_dir=run.root, work_dir=run.root / "work" / spec.id)
    step: Step = cls(spec.params, context)
    parts: dict[str, Any] = {
        "uses": spec.uses,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "params": as_dict(spec.params),
        "version": step.version(),
        "datakit": __version__,
        "input": upstream.fingerprint if upstream else None,
    }
    if cls.uses_seed:
        parts["seed"] = recipe.seed
    if cls.kind == "source" and given is None:
        parts["shard_rows"] = recipe.shard_rows
        parts["inputs"] = step.inputs_signature()  # type: ignore[attr-defined]
    fp = given if cls.kind == "source" and given is not None else fingerprint(parts)
    if upstream is None:
        level = 0
    else:
        level = upstream.level + (1 if cls.kind == "global" else 0)
    stored = cls.kind == "sink" or not cls.pure or spec.persist or (store_sources and cls.kind == "source")
    node = Node(spec, step, fp, run.store(spec.id, fp), upstream, None, level, stored)  # type: ignore[arg-type]
    node.root = upstream.root if upstream is not None else node
    return node
