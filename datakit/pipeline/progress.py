"""Progress bars: one tqdm bar per step while a pass runs, counting rows (and tokens where a step reports them)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from datakit.pipeline.plan import Node
from datakit.pipeline.shard_task import StepStats


class Progress:
    """Bars for the steps of one pass; `update` is safe to call from worker threads."""

    def __init__(self, nodes: list[Node], enabled: bool, label: str = "") -> None:
        self._lock = threading.Lock()
        self._bars: dict[str, Any] = {}
        self._tokens: dict[str, float] = {}
        self._started = time.perf_counter()
        if not enabled:
            return
        from tqdm import tqdm

        width = max((len(n.id) for n in nodes), default=0)
        for position, node in enumerate(nodes):
            self._bars[node.id] = tqdm(desc=f"{label}{node.id.ljust(width)}", unit=" rows", position=position,
                                       leave=True, file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def update(self, node: Node, stats: StepStats) -> None:
        bar = self._bars.get(node.id)
        if bar is None:
            return
        with self._lock:
            bar.update(stats.rows_in)
            tokens = stats.metrics.get("tokens")
            if tokens:
                self._tokens[node.id] = self._tokens.get(node.id, 0) + tokens
                rate = self._tokens[node.id] / max(time.perf_counter() - self._started, 1e-9)
                bar.set_postfix_str(f"{rate:,.0f} tokens/s", refresh=False)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
