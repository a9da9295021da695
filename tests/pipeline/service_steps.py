"""Test steps standing in for a remote service: not pure, slow, and failing rows while a flag file exists.

Recipes name them as `uses: tests.pipeline.service_steps:Service`, the way users plug in their own steps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.pipeline import MapResult, MapStep, SourceStep, TransientError, param


class Service(MapStep):
    """Adds an `answer` column (the text upper-cased). While `down_flag` exists the service is down:
    in mode "row" the rows whose id is a multiple of `modulo` fail; in mode "transient" every call
    raises TransientError (so the executor's retries and backoff run)."""

    @dataclass(frozen=True)
    class Params:
        down_flag: str | None = param(None, help="file whose existence means the service is down")
        modulo: int = param(7, help="in mode 'row', ids divisible by this fail while down")
        mode: Literal["row", "transient"] = param("row", help="how the outage shows")
        delay: float = param(0.0, help="seconds each call takes")
        calls_log: str | None = param(None, help="append one line per call to this file")
        crash_on_id: int | None = param(None, help="behave like a bug: raise when this id is in the batch")
        setup_log: str | None = param(None, help="append a line to this file each time setup() runs")

    def setup(self) -> None:
        if self.params.setup_log:
            with open(self.params.setup_log, "a") as log:
                log.write("setup\n")

    def process(self, batch: pa.RecordBatch) -> MapResult:
        with Flow.lock:
            Flow.running += 1
            Flow.most_calls = max(Flow.most_calls, Flow.running)
        try:
            return self._answer(batch)
        finally:
            with Flow.lock:
                Flow.running -= 1

    def _answer(self, batch: pa.RecordBatch) -> MapResult:
        if self.params.calls_log:
            with open(self.params.calls_log, "a") as log:
                log.write(f"{batch.num_rows}\n")
        if self.params.delay:
            time.sleep(self.params.delay)
        if self.params.crash_on_id is not None and self.params.crash_on_id in batch.column("id").to_pylist():
            raise KeyError(self.params.crash_on_id)
        down = self.params.down_flag is not None and Path(self.params.down_flag).exists()
        if down and self.params.mode == "transient":
            raise TransientError("service unavailable")
        ids = batch.column("id").to_numpy()
        failing = (ids % self.params.modulo == 0) if down else np.zeros(batch.num_rows, dtype=bool)
        ok = batch.filter(pa.array(~failing))
        ok = ok.append_column("answer", pc.utf8_upper(ok.column("text")))
        bad = [(int(i), "service unavailable for this row") for i in np.flatnonzero(failing)]
        return MapResult(ok, failed=bad, metrics={"calls": 1})


class Flow:
    """Rows the `Numbers` source has handed out and rows `Slow` has finished, to observe backpressure."""

    yielded = 0
    finished = 0
    most_ahead = 0
    running = 0  # Service calls in progress
    most_calls = 0
    lock = threading.Lock()


class Numbers(SourceStep):
    """Yields `rows` rows (id, text) in batches of `batch_rows`, counting them in `Flow`."""

    @dataclass(frozen=True)
    class Params:
        rows: int = param(help="rows to yield")
        batch_rows: int = param(100, help="rows per batch")

    def read(self) -> Iterator[pa.RecordBatch]:
        for start in range(0, self.params.rows, self.params.batch_rows):
            ids = np.arange(start, min(start + self.params.batch_rows, self.params.rows))
            with Flow.lock:
                Flow.yielded += len(ids)
                Flow.most_ahead = max(Flow.most_ahead, Flow.yielded - Flow.finished)
            yield pa.record_batch({"id": ids, "text": [f"row {i}" for i in ids]})


class Slow(MapStep):
    """Takes `delay` seconds per shard and counts finished rows in `Flow`."""

    @dataclass(frozen=True)
    class Params:
        delay: float = param(0.01, help="seconds per shard")

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        time.sleep(self.params.delay)
        with Flow.lock:
            Flow.finished += batch.num_rows
        return batch


class EnglishOnly(MapStep):
    """A pure check that fails (rather than drops) rows whose `lang` is not "en"."""

    pure = True

    @dataclass(frozen=True)
    class Params:
        pass

    def process(self, batch: pa.RecordBatch) -> MapResult:
        english = np.array([lang == "en" for lang in batch.column("lang").to_pylist()], dtype=bool)
        bad = [(int(i), "not English") for i in np.flatnonzero(~english)]
        return MapResult(batch.filter(pa.array(english)), failed=bad)
