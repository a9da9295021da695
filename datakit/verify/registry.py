"""The verifier registry: constraint ids mapped to cheap programs that say whether a response satisfies them.

A constraint is data, an id plus keyword arguments (`{"id": "length_constraints:number_words", "kwargs":
{"relation": "at least", "num_words": 300}}`), so a dataset carries its own checks. Verifiers come in
three scopes, by what they read besides the kwargs:

- `response`: the response alone (IFEval's checks, label sets, lengths, regexes, JSON, formats);
- `input`: the response and a field of the input, passed as `source` (grounding, copying);
- `multi`: the answers to a group of related prompts at once (consistency across answers).

Modes follow IFEval: `strict` checks the response as it is; `loose` also tries it without its first
line, its last line, both, and with `*` removed, and passes if any variant passes. An empty (or
whitespace-only) response fails every constraint in both modes.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from datakit.errors import UsageError

Scope = Literal["response", "input", "multi"]
Mode = Literal["strict", "loose"]
MODES: tuple[Mode, ...] = ("strict", "loose")

# Modules whose import registers the built-in verifiers (kept lazy so `import datakit` stays light).
BUILTIN_MODULES = ("datakit.verify.ifeval", "datakit.verify.constraints")


@dataclass(frozen=True)
class Verifier:
    """One registered check.

    `check` is called as `check(response, **kwargs)` for the `response` scope, `check(response,
    source=..., **kwargs)` for `input`, and `check(responses, items) -> list[bool]` for `multi`
    (`items[i]`: answer i's kwargs). `needs_prompt` verifiers also get `prompt=` (the instruction
    the response answers). `arguments` lists the kwargs a constraint may carry.
    """

    id: str
    check: Callable[..., Any]
    scope: Scope
    description: str
    arguments: tuple[str, ...]
    needs_prompt: bool = False


@dataclass(frozen=True)
class Constraint:
    """A constraint instance as rows carry it: a verifier id and its keyword arguments."""

    id: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_value(cls, value: Any) -> Constraint:
        """From a row's `{"id": ..., "kwargs": ...}` mapping (kwargs may be a JSON string or absent)."""
        if isinstance(value, Constraint):
            return value
        if not isinstance(value, Mapping) or not isinstance(value.get("id"), str):
            raise ValueError(f"a constraint is a mapping with a string 'id', got {value!r}")
        kwargs = value.get("kwargs") or {}
        if isinstance(kwargs, str):
            import json

            kwargs = json.loads(kwargs) if kwargs.strip() else {}
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"constraint {value['id']!r}: kwargs must be a mapping, got {kwargs!r}")
        return cls(value["id"], dict(kwargs))


_REGISTRY: dict[str, Verifier] = {}
_loaded = False


def verifier(
    constraint_id: str,
    *,
    scope: Scope = "response",
    needs_prompt: bool = False,
    arguments: Sequence[str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as the verifier of `constraint_id`; its docstring's first line describes it.

    The kwargs a constraint may carry are the function's keyword parameters, or `arguments` for
    `multi` verifiers (whose items carry them; `group` is always allowed there).
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if constraint_id in _REGISTRY and _REGISTRY[constraint_id].check is not fn:
            raise ValueError(f"verifier {constraint_id!r} is registered twice")
        skip = {"response", "responses", "items", "source", "prompt"}
        if arguments is not None:
            names = tuple(arguments)
        else:
            names = tuple(
                name
                for name, p in inspect.signature(fn).parameters.items()
                if name not in skip and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            )
        if scope == "multi" and "group" not in names:
            names = ("group", *names)
        description = (inspect.getdoc(fn) or "").split("\n")[0]
        _REGISTRY[constraint_id] = Verifier(constraint_id, fn, scope, description, names, needs_prompt)
        return fn

    return register


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def verifiers() -> dict[str, Verifier]:
    """Every registered verifier by id (the built-in ones are loaded on first use)."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def get_verifier(constraint_id: str) -> Verifier:
    """The verifier for an id, or a UsageError that names the closest known ids."""
    _load_builtins()
    try:
        return _REGISTRY[constraint_id]
    except KeyError:
        close = difflib.get_close_matches(constraint_id, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `datakit verifiers` lists them"
        raise UsageError(f"unknown constraint id {constraint_id!r}{hint}") from None


def loose_variants(response: str) -> list[str]:
    """The response and the variants IFEval's loose mode also accepts (first/last line cut, '*' removed)."""
    lines = response.split("\n")
    without_first = "\n".join(lines[1:]).strip()
    without_last = "\n".join(lines[:-1]).strip()
    without_both = "\n".join(lines[1:-1]).strip()
    variants = [response, without_first, without_last, without_both]
    return variants + [v.replace("*", "") for v in variants]


def check(
    constraint: Constraint | Mapping[str, Any],
    response: str,
    *,
    prompt: str | None = None,
    source: str | None = None,
    mode: Mode = "strict",
) -> bool:
    """Whether `response` satisfies one `response`- or `input`-scope constraint in the given mode."""
    # A plain `{"id": str, "kwargs": dict}` (what rows carry) is read as it is, without a `Constraint` in between.
    if type(constraint) is dict and type(constraint.get("id")) is str and type(constraint.get("kwargs", {})) is dict:
        constraint_id, raw = constraint["id"], constraint.get("kwargs", {})
    else:
        parsed = Constraint.from_value(constraint)
        constraint_id, raw = parsed.id, parsed.kwargs
    found = _REGISTRY.get(constraint_id) if _loaded else None
    if found is None:
        found = get_verifier(constraint_id)
    if found.scope == "multi":
        raise UsageError(f"constraint {constraint_id!r} compares several answers; use check_group")
    kwargs = _kwargs(found, constraint_id, raw)
    if found.needs_prompt:
        kwargs["prompt"] = prompt
    if found.scope == "input":
        if source is None:
            raise UsageError(f"constraint {constraint_id!r} needs the input text it checks against (source)")
        kwargs["source"] = source
    if not isinstance(response, str) or not response.strip():
        return False
    if mode == "strict":
        return bool(found.check(response, **kwargs))
    return any(bool(found.check(candidate, **kwargs)) for candidate in _distinct_variants(response))


def _distinct_variants(response: str) -> Iterator[str]:
    """The non-blank texts of `loose_variants`, in its order, each once and made only when asked for.

    The checks are pure, so a text that repeats an earlier variant (as the `*`-less ones do where the response has
    no `*`) would only repeat its verdict; and a response that passes as it is costs no variant at all.
    """
    yield response
    kept = [response]
    lines = response.split("\n")
    if len(lines) > 1:
        for variant in ("\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()):
            if variant.strip() and variant not in kept:
                kept.append(variant)
                yield variant
    if "*" in response:
        starless: list[str] = []
        for text in kept:
            variant = text.replace("*", "")
            if variant.strip() and variant not in kept and variant not in starless:
                starless.append(variant)
                yield variant


def check_group(constraints: Sequence[Constraint | Mapping[str, Any]], responses: Sequence[str]) -> list[bool]:
    """For a `multi`-scope constraint: whether each answer of a group of related answers is consistent.

    `constraints[i]` is the constraint as answer i's row carries it (one id for the whole group, each
    with its own kwargs, e.g. which question the answer is to); the `group` kwarg only names the group
    and is not passed on. The verifier is called as `check(responses, items)` with `items[i]` answer
    i's remaining kwargs, and returns one verdict per answer. An empty answer is never consistent.
    """
    parsed = [Constraint.from_value(c) for c in constraints]
    if len(parsed) != len(responses):
        raise ValueError(f"{len(parsed)} constraints for {len(responses)} answers")
    if not parsed:
        return []
    ids = {c.id for c in parsed}
    if len(ids) != 1:
        raise UsageError(f"a group is checked against one constraint id, got {', '.join(sorted(ids))}")
    found = get_verifier(parsed[0].id)
    if found.scope != "multi":
        raise UsageError(f"constraint {found.id!r} checks one response; use check")
    items = [{k: v for k, v in _arguments(found, c).items() if k != "group"} for c in parsed]
    verdicts = list(found.check(list(responses), items))
    if len(verdicts) != len(responses):
        raise ValueError(f"verifier {found.id!r} returned {len(verdicts)} verdicts for {len(responses)} answers")
    return [bool(v) and isinstance(r, str) and bool(r.strip()) for v, r in zip(verdicts, responses)]


def _arguments(found: Verifier, constraint: Constraint) -> dict[str, Any]:
    """The constraint's kwargs as the verifier takes them; unknown names are a clear error, nulls are dropped."""
    return _kwargs(found, constraint.id, constraint.kwargs)


_ARGUMENT_SETS: dict[str, tuple[Verifier, frozenset[str]]] = {}  # by id: the verifier and its `arguments` as a set


def _kwargs(found: Verifier, constraint_id: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """`_arguments` from a constraint's id and kwargs."""
    kwargs = {k: v for k, v in raw.items() if v is not None}
    known = _ARGUMENT_SETS.get(found.id)
    if known is None or known[0] is not found:
        known = _ARGUMENT_SETS[found.id] = (found, frozenset(found.arguments))
    allowed = known[1]
    if not kwargs.keys() <= allowed:
        unknown = sorted(kwargs.keys() - allowed)
        raise UsageError(
            f"constraint {constraint_id!r} takes {', '.join(found.arguments) or 'no arguments'}; "
            f"got unknown {', '.join(unknown)}"
        )
    return kwargs
