"""The step registry: built-in steps by name, plugin steps by `module:Class` or the `datakit.steps` entry points."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points

from datakit.pipeline.params import did_you_mean
from datakit.pipeline.step import GlobalStep, MapStep, SinkStep, SourceStep, Step

_KINDS = (SourceStep, MapStep, GlobalStep, SinkStep)
_REGISTRY: dict[str, type[Step]] = {}
_BUILTIN_MODULES = (
    "datakit.pipeline.steps.io_steps",
    "datakit.pipeline.steps.columns",
    "datakit.pipeline.steps.sampling",
    "datakit.pipeline.steps.dedup",
    "datakit.curate.filters",
    "datakit.curate.classifiers",
    "datakit.curate.minhash",
    "datakit.curate.semantic",
    "datakit.generate.magpie.steps",
    "datakit.generate.magpie.filter",
    "datakit.generate.responses",
    "datakit.generate.act.synthesis",
    "datakit.label.tags",
    "datakit.label.rewards",
    "datakit.label.pairing",
    "datakit.label.judge",
    "datakit.label.csr",
)
_loaded = False


def register(name: str) -> Callable[[type[Step]], type[Step]]:
    """Class decorator that makes a step usable in recipes as `uses: name`."""

    def decorate(cls: type[Step]) -> type[Step]:
        if not issubclass(cls, _KINDS):
            raise TypeError(f"{cls.__name__} must derive from SourceStep, MapStep, GlobalStep or SinkStep")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"a step named '{name}' is already registered ({existing.__module__}.{existing.__qualname__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    for ep in entry_points(group="datakit.steps"):
        if ep.name not in _REGISTRY:
            cls = ep.load()
            register(ep.name)(cls)
    _loaded = True


def available() -> dict[str, type[Step]]:
    """Every registered step by name, built-ins and installed plugins."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def lookup(uses: str) -> type[Step]:
    """The step class for a recipe's `uses`: a registered name, or `package.module:ClassName`.

    Raises LookupError with a suggestion when nothing matches.
    """
    _load_builtins()
    if uses in _REGISTRY:
        return _REGISTRY[uses]
    if ":" in uses:
        module_name, _, attr = uses.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise LookupError(f"cannot import module '{module_name}' for step '{uses}': {exc}") from None
        cls = getattr(module, attr, None)
        if not (isinstance(cls, type) and issubclass(cls, _KINDS)):
            raise LookupError(f"'{uses}' is not a step class (it must derive from a datakit step kind)")
        if not cls.name:
            cls.name = uses
        return cls
    raise LookupError(f"unknown step '{uses}'{did_you_mean(uses, _REGISTRY)}; 'datakit steps' lists them, or use 'package.module:Class'")
