"""Recipes: the YAML that names a run's steps, their parameters and inputs, checked before anything runs.

```yaml
name: demo                  # optional; defaults to the file name
seed: 0                     # run seed: per-row randomness derives from it
output: runs/demo           # run directory (default runs/<name>)
shard_rows: 10000           # rows per shard: the unit of work and of recovery
steps:
  - id: load
    uses: read
    with: {path: data/train.jsonl}
  - id: long_enough
    uses: filter            # input defaults to the step above
    with: {where: "length(text) >= 20"}
  - id: save
    uses: write
    input: long_enough
```

Every problem is reported with the recipe's file, the line and the dotted key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datakit.errors import RecipeError
from datakit.pipeline.params import ParamError, build_params, did_you_mean
from datakit.pipeline.registry import lookup
from datakit.pipeline.yaml_lines import LinedDict, LinedList, load_yaml, parse_scalar

_TOP_KEYS = {
    "name": "the run's name (default: the recipe's file name)",
    "description": "free text, shown in the run summary",
    "seed": "run seed (integer, default 0)",
    "output": "run directory (default runs/<name>)",
    "shard_rows": "rows per shard (default 10000)",
    "workers": "threads that process shards at once in the local executor (default: one per core)",
    "retries": "retries for transient errors, for every step (default 3)",
    "retry_backoff": "seconds before the first retry, doubled each time (default 1.0)",
    "profiles": "named sets of overrides chosen with --profile, e.g. profiles: {tiny: {models.policy.path: ...}}",
    "models": "named models that steps refer to by name, e.g. models: {policy: {path: org/model, engine: vllm}}",
    "steps": "the list of steps",
}
_STEP_KEYS = {
    "id": "a unique name for the step",
    "uses": "the step to run (see 'datakit steps') or package.module:Class",
    "with": "the step's parameters",
    "input": "the step whose rows this step reads (default: the step above)",
    "persist": "store this step's output even if it is cheap to recompute",
    "retries": "retries for transient errors (overrides the run's setting)",
    "resources": "per-worker resources on Ray, e.g. {num_gpus: 1, num_cpus: 2, concurrency: 2}",
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RESOURCE_KEYS = {"num_cpus", "num_gpus", "memory", "concurrency"}


@dataclass
class StepSpec:
    """One checked step of a recipe."""

    id: str
    uses: str
    cls: type
    params: Any
    input: str | None
    persist: bool
    retries: int | None
    resources: dict[str, float]
    line: int | None


@dataclass
class Recipe:
    """A checked recipe: run settings plus steps in file order (inputs always refer to known steps)."""

    path: str
    name: str
    description: str
    seed: int
    output: str
    shard_rows: int
    workers: int | None
    retries: int
    retry_backoff: float
    steps: list[StepSpec]
    document: dict[str, Any] = field(repr=False, default_factory=dict)  # the recipe after overrides, as plain data

    def step(self, step_id: str) -> StepSpec:
        for spec in self.steps:
            if spec.id == step_id:
                return spec
        raise KeyError(step_id)

    def consumers(self, step_id: str) -> list[StepSpec]:
        return [s for s in self.steps if s.input == step_id]


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = (),
                profile: str | None = None) -> Recipe:
    """Read, override and check a recipe.

    A `profile` applies one named set of overrides from the recipe's `profiles` section first; then each
    `key=value` of `overrides` (dotted keys, steps by id: `steps.filter.with.where=...`) in order.
    """
    display = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError("recipe file not found", path=display) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe: {exc}", path=display) from None
    document = load_yaml(text, display)
    if not isinstance(document, dict):
        raise RecipeError("a recipe is a mapping with a 'steps' list", path=display, row=1)
    if profile is not None:
        for key, value in _profile(document, profile, display).items():
            _set_value(document, str(key), value, display, f"profiles.{profile}.{key}")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set expects key=value, got '{item}'", path=display, field=item)
        _set_value(document, key.strip(), parse_scalar(raw), display, f"--set {key.strip()}")
    return _check_recipe(document, display)


def _profile(document: LinedDict, name: str, path: str) -> dict[str, Any]:
    """The overrides of profile `name` from the recipe's `profiles` section."""
    profiles = document.get("profiles") or {}
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise _err("'profiles' maps names to overrides, e.g. {tiny: {steps.gen.with.count: 8}}",
                   path, document, "profiles", "profiles")
    if name not in profiles:
        known = ", ".join(profiles) or "none defined"
        raise RecipeError(f"no profile named '{name}'{did_you_mean(name, profiles)}; profiles: {known}",
                          path=path, field="--profile")
    return profiles[name]


def _set_value(document: LinedDict, key: str, value: Any, path: str, where: str) -> None:
    """Set a dotted recipe key (`seed`, `models.policy.path`, `steps.<id>.with.<param>`) to `value`."""
    parts = key.split(".")
    if parts[0] == "steps":
        if len(parts) < 3:
            raise RecipeError("address a step setting as steps.<id>.<key>[.<param>]", path=path, field=where)
        steps = document.get("steps")
        target = None
        if isinstance(steps, list):
            target = next((s for s in steps if isinstance(s, dict) and s.get("id") == parts[1]), None)
        if target is None:
            raise RecipeError(f"no step with id '{parts[1]}'", path=path, field=where)
        container, rest = target, parts[2:]
    else:
        if parts[0] not in _TOP_KEYS:
            raise RecipeError(f"unknown recipe key '{parts[0]}'", path=path, field=where)
        container, rest = document, parts
    for part in rest[:-1]:
        child = container.get(part)
        if child is None:
            child = LinedDict()
            container[part] = child
        if not isinstance(child, dict):
            raise RecipeError(f"'{part}' is not a mapping, cannot set '{key}'", path=path, field=where)
        container = child
    container[rest[-1]] = value
    if isinstance(container, LinedDict):
        container.lines[rest[-1]] = None


def _err(message: str, path: str, node: Any, key: Any, dotted: str) -> RecipeError:
    row = node.line_of(key) if isinstance(node, LinedDict | LinedList) else None
    return RecipeError(message, path=path, row=row, field=dotted)


def _check_recipe(doc: LinedDict, path: str) -> Recipe:
    for key in doc:
        if key not in _TOP_KEYS:
            raise _err(f"unknown recipe key '{key}'{did_you_mean(key, _TOP_KEYS)}", path, doc, key, str(key))

    def typed(key: str, kind: type | tuple[type, ...], default: Any, minimum: float | None = None) -> Any:
        value = doc.get(key, default)
        if value is None and default is None:
            return None
        ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)))
        if not ok:
            raise _err(f"'{key}' must be {_kind_name(kind)}, got {value!r}", path, doc, key, key)
        if minimum is not None and value < minimum:
            raise _err(f"'{key}' must be at least {minimum}, got {value}", path, doc, key, key)
        return value

    name = typed("name", str, Path(path).stem)
    if not _ID.match(name):
        raise _err(f"'name' may hold letters, digits, '_', '-' and '.', got {name!r}", path, doc, "name", "name")
    description = typed("description", str, "")
    seed = typed("seed", int, 0)
    output = typed("output", str, f"runs/{name}")
    shard_rows = typed("shard_rows", int, 10_000, minimum=1)
    workers = typed("workers", int, None, minimum=1)
    retries = typed("retries", int, 3, minimum=0)
    retry_backoff = float(typed("retry_backoff", (int, float), 1.0, minimum=0))

    models = doc.get("models") or {}
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise _err("'models' maps names to model settings, e.g. {policy: {path: org/model}}", path, doc, "models", "models")
    steps_doc = doc.get("steps")
    if not isinstance(steps_doc, list) or not steps_doc:
        raise _err("'steps' must be a non-empty list of steps", path, doc, "steps", "steps")
    specs: list[StepSpec] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(steps_doc):
        line = steps_doc.line_of(i) if isinstance(steps_doc, LinedList) else None
        if not isinstance(raw, dict):
            raise RecipeError("each step is a mapping with 'id' and 'uses'", path=path, row=line, field=f"steps[{i}]")
        specs.append(_check_step(raw, i, specs, seen, retries, models, path, line))
    _check_graph(specs, path)
    plain = _plain(doc)
    return Recipe(path, name, description, seed, output, shard_rows, workers, retries, retry_backoff, specs, plain)


def _check_step(raw: LinedDict, i: int, previous: list[StepSpec], seen: dict[str, int], retries: int,
                models: dict[str, Any], path: str, line: int | None) -> StepSpec:
    for key in raw:
        if key not in _STEP_KEYS:
            raise _err(f"unknown step key '{key}'{did_you_mean(key, _STEP_KEYS)}; step keys: {', '.join(_STEP_KEYS)}", path, raw, key, f"steps[{i}].{key}")
    step_id = raw.get("id")
    if not isinstance(step_id, str) or not _ID.match(step_id):
        raise _err("every step needs an 'id' of letters, digits, '_', '-' or '.'", path, raw, "id", f"steps[{i}].id")
    where = f"steps.{step_id}"
    if step_id in seen:
        raise _err(f"step id '{step_id}' is used twice (first at line {seen[step_id]})", path, raw, "id", f"{where}.id")
    seen[step_id] = raw.line_of("id") if isinstance(raw, LinedDict) else 0
    uses = raw.get("uses")
    if not isinstance(uses, str) or not uses:
        raise _err("missing 'uses': which step to run (see 'datakit steps')", path, raw, "uses", f"{where}.uses")
    try:
        cls = lookup(uses)
    except LookupError as exc:
        raise _err(str(exc), path, raw, "uses", f"{where}.uses") from None
    values = raw.get("with") or {}
    if not isinstance(values, dict):
        raise _err("'with' must be a mapping of parameters", path, raw, "with", f"{where}.with")
    values = _resolve_models(cls.Params, values, models, path, f"{where}.with")
    try:
        params = build_params(cls.Params, values)
    except ParamError as exc:
        top = exc.key.split(".")[0].split("[")[0] if exc.key else None
        node, key = (values, top) if top in values else (raw, "with" if "with" in raw else "uses")
        dotted = f"{where}.with.{exc.key}" if exc.key else f"{where}.with"
        raise _err(exc.message, path, node, key, dotted) from None

    if cls.kind == "source":
        if raw.get("input") is not None:
            raise _err(f"'{uses}' is a source: it reads no input", path, raw, "input", f"{where}.input")
        upstream = None
    else:
        upstream = raw.get("input")
        if upstream is None:
            if not previous:
                raise _err(f"'{uses}' needs an input, but no step comes before it; start with a source such as 'read'",
                           path, raw, "uses", f"{where}.input")
            upstream = previous[-1].id
        elif not isinstance(upstream, str):
            raise _err("'input' names one step by its id", path, raw, "input", f"{where}.input")

    persist = raw.get("persist", False)
    if not isinstance(persist, bool):
        raise _err("'persist' must be true or false", path, raw, "persist", f"{where}.persist")
    step_retries = raw.get("retries", None)
    if step_retries is not None and (not isinstance(step_retries, int) or isinstance(step_retries, bool) or step_retries < 0):
        raise _err("'retries' must be a whole number >= 0", path, raw, "retries", f"{where}.retries")
    resources = raw.get("resources") or {}
    if not isinstance(resources, dict):
        raise _err("'resources' must be a mapping", path, raw, "resources", f"{where}.resources")
    for key, value in resources.items():
        if key not in _RESOURCE_KEYS:
            raise _err(f"unknown resource '{key}'; known: {', '.join(sorted(_RESOURCE_KEYS))}",
                       path, resources, key, f"{where}.resources.{key}")
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise _err(f"resource '{key}' must be a number >= 0", path, resources, key, f"{where}.resources.{key}")
    line = raw.line if isinstance(raw, LinedDict) else line
    return StepSpec(step_id, uses, cls, params, upstream, persist, step_retries,
                    {k: float(v) for k, v in resources.items()}, line)


def _resolve_models(params_cls: type, values: dict[str, Any], models: dict[str, Any], path: str,
                    where: str) -> dict[str, Any]:
    """Replace a model parameter given as a name (`model: policy`) by that entry of the recipe's `models`."""
    hints = typing.get_type_hints(params_cls)
    resolved = dict(values)
    for key, value in values.items():
        if not isinstance(value, str) or not any(dataclasses.is_dataclass(t) for t in _members(hints.get(key))):
            continue
        if value not in models:
            known = ", ".join(models) or "none defined"
            raise _err(f"no model named '{value}' under 'models'{did_you_mean(value, models)}; models: {known}",
                       path, values, key, f"{where}.{key}")
        resolved[key] = models[value]
    if isinstance(values, LinedDict):
        lined = LinedDict(resolved)
        lined.lines.update(values.lines)
        lined.line = values.line
        return lined
    return resolved


def _members(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)


def _check_graph(specs: list[StepSpec], path: str) -> None:
    """Every input names a known step, and following inputs never comes back to where it started."""
    by_id = {s.id: s for s in specs}
    for spec in specs:
        if spec.input is not None and spec.input not in by_id:
            raise RecipeError(f"input '{spec.input}' is not a step of this recipe{did_you_mean(spec.input, by_id)}", path=path, row=spec.line,
                              field=f"steps.{spec.id}.input")
    for spec in specs:
        chain = [spec.id]
        current = spec
        while current.input is not None:
            if current.input in chain:
                cycle = " -> ".join(chain[chain.index(current.input):] + [current.input])
                raise RecipeError(f"steps feed each other in a cycle: {cycle}", path=path, row=spec.line,
                                  field=f"steps.{spec.id}.input")
            chain.append(current.input)
            current = by_id[current.input]


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
