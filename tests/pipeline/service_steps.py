"""Test steps standing in for a remote service: not pure, slow, and failing rows while a flag file exists.

Recipes name them as `uses: tests.pipeline.service_steps:Service`, the way users plug in their own steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.pipeline import MapResult, MapStep, TransientError, param


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

    def process(self, batch: pa.RecordBatch) -> MapResult:
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
