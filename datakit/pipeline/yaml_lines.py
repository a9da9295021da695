"""YAML loading that remembers the line of every key, so recipe errors can point at it."""

from __future__ import annotations

from typing import Any

import yaml

from datakit.errors import RecipeError


class LinedDict(dict):
    """A mapping from YAML that knows its own line and the line of each key (1-based; None if unknown)."""

    line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, int | None] = {}

    def line_of(self, key: Any) -> int | None:
        return self.lines.get(key, self.line)


class LinedList(list):
    """A sequence from YAML that knows its own line and the line of each item."""

    line: int | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lines: list[int | None] = []

    def line_of(self, index: int) -> int | None:
        return self.lines[index] if 0 <= index < len(self.lines) else self.line


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers; duplicate keys are refused."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LinedDict:
    loader.flatten_mapping(node)
    result = LinedDict()
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise RecipeError("mapping keys must be plain scalars", row=key_node.start_mark.line + 1)
        if key in result:
            raise RecipeError(f"key '{key}' appears twice", row=key_node.start_mark.line + 1, field=str(key))
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LinedList:
    result = LinedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(text: str, path: str | None = None) -> Any:
    """Parse YAML text into plain values whose mappings and lists remember their lines."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except RecipeError as exc:
        exc.path = path
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        row = mark.line + 1 if mark is not None else None
        raise RecipeError(f"not valid YAML: {exc.problem or exc}", path=path, row=row) from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"not valid YAML: {exc}", path=path) from None


def parse_scalar(text: str) -> Any:
    """Read a `--set` value the way YAML would read it in the recipe (numbers, booleans, lists...)."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506
    except yaml.YAMLError:
        return text
