"""`SourceBatch`: a record batch plus where its rows came from, for precise messages downstream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


# eq=False: comparing numpy arrays field by field is ambiguous, so batches compare by identity.
@dataclass(frozen=True, eq=False)
class SourceBatch:
    """Rows read from one file, with the file's display path and each row's position in it."""

    batch: pa.RecordBatch
    path: str
    first_row: int  # 0-based index in the file of the batch's row 0
    lines: np.ndarray | None = None  # int64 1-based line of each row (text formats), else None

    def row_number(self, i: int) -> int:
        """The number messages use for batch row `i`: its line in text files, else its 1-based row."""
        if self.lines is not None:
            return int(self.lines[i])
        return self.first_row + i + 1

    def row_numbers(self, indices: np.ndarray) -> np.ndarray:
        """`row_number` for many batch rows at once, as an int64 array."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.lines is not None:
            return self.lines[indices]
        return indices + (self.first_row + 1)
