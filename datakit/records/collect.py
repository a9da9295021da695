"""Where validation errors are: list levels that map item positions to rows, and the collector of bad positions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from datakit.records.arrowops import list_lengths

Message = str | Callable[[int], str]
Path = tuple[Any, ...]  # property names (str) and Levels (a list index at that level)


class Level:
    """One nesting depth of list items; maps item positions to their parent position and list index."""

    __slots__ = ("parent", "lists", "_parents", "_starts")

    def __init__(self, parent: Level | None = None, lists: pa.Array | None = None) -> None:
        self.parent = parent
        self.lists = lists
        self._parents: np.ndarray | None = None
        self._starts: np.ndarray | None = None

    def up(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(parent positions, index within the parent's list) of item positions."""
        if self._parents is None:
            lengths = list_lengths(self.lists)
            self._parents = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
            self._starts = np.cumsum(lengths) - lengths
        parents = self._parents[pos]
        return parents, pos - self._starts[parents]

    def rows(self, pos: np.ndarray) -> np.ndarray:
        """Root rows of positions at this level."""
        level = self
        while level.parent is not None:
            pos, _ = level.up(pos)
            level = level.parent
        return pos


def field_name(path: Path, level: Level, pos: int) -> str:
    """Render a field path for one position, e.g. `prompt[2].content`."""
    indices: dict[int, int] = {}
    p = np.array([pos])
    while level.parent is not None:
        parent, index = level.up(p)
        indices[id(level)] = int(index[0])
        p, level = parent, level.parent
    out = ""
    for seg in path:
        if isinstance(seg, Level):
            out += f"[{indices.get(id(seg), '?')}]"
        else:
            out += ("." if out else "") + seg
    return out


def bind_path(path: tuple[str, ...]) -> str:
    """A field path at bind time, where list items show as `[]`."""
    out = ""
    for seg in path:
        out += seg if seg == "[]" else ("." if out else "") + seg
    return out


def show(value: Any, limit: int = 60) -> str:
    """A value quoted for an error message, shortened when long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


class Collector:
    """Gathers bad positions from checks: counts all of them, keeps the first `budget` by row."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.count = 0
        self.bad_rows: list[np.ndarray] = []
        self.details: list[tuple[np.ndarray, np.ndarray, Level, Path, Message, int]] = []
        # Results shared between checks of one batch, e.g. a role column's enum codes, used again by the roles rule.
        self.memo: dict[tuple[Any, ...], Any] = {}

    def add(self, level: Level, bad: np.ndarray, path: Path, message: Message) -> None:
        pos = np.flatnonzero(bad)
        if not len(pos):
            return
        self.count += len(pos)
        rows = level.rows(pos)
        self.bad_rows.append(rows)
        if self.budget > 0:
            k = self.budget
            self.details.append((rows[:k], pos[:k], level, path, message, len(self.details)))

    def issues(self) -> list[tuple[int, str, str]]:
        """The first `budget` (row, field, message) triples, ordered by row then by check."""
        flat = []
        for rows, positions, level, path, message, order in self.details:
            for row, pos in zip(rows.tolist(), positions.tolist()):
                flat.append((row, order, pos, level, path, message))
        flat.sort(key=lambda x: (x[0], x[1]))
        out = []
        for row, _, pos, level, path, message in flat[: self.budget]:
            text = message(pos) if callable(message) else message
            out.append((row, field_name(path, level, pos), text))
        return out

    def rows_with_errors(self) -> int:
        if not self.bad_rows:
            return 0
        return len(np.unique(np.concatenate(self.bad_rows)))


class Predicate(Collector):
    """A collector that only records which positions of one level failed (for `if` conditions)."""

    def __init__(self, size: int) -> None:
        super().__init__(0)
        self.failed = np.zeros(size, dtype=bool)

    def add(self, level: Level, bad: np.ndarray, path: Path, message: Message) -> None:
        self.failed |= bad


def path_key(path: Path) -> tuple[Any, ...]:
    """A hashable key for a field path within one batch run."""
    return tuple(id(seg) if isinstance(seg, Level) else seg for seg in path)
