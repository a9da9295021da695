"""Validate Arrow data against a record schema, column-wise, reporting the first N errors by row."""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from datakit.errors import DataError, DatakitError, InputError
from datakit.records.arrow_types import plain_type
from datakit.records.detect import detect_style, label, pick_style, unexplained_columns
from datakit.records.plans import Binder, Collector, Level, StructPlan
from datakit.records.schemas import RecordSchema, Style, get_schema

DEFAULT_MAX_ERRORS = 20


@dataclass(frozen=True)
class Issue:
    """One validation error. `row` is the 1-based line (text formats) or row number; None for a whole column."""

    path: str
    row: int | None
    index: int | None
    field: str
    message: str
    is_line: bool = False

    def __str__(self) -> str:
        where = self.path + (f":{self.row}" if self.row is not None else "")
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "row": self.row, "index": self.index, "field": self.field,
                                  "message": self.message}
        if self.is_line:
            out["line"] = self.row
        return out


@dataclass
class FileReport:
    """What validating one file found: the schema used, row and error counts, and the first errors."""

    path: str
    schema: str | None = None
    detected: bool = False
    rows: int = 0
    error_count: int = 0
    rows_with_errors: int = 0
    issues: list[Issue] = field(default_factory=list)
    failure: DatakitError | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.failure is not None and not isinstance(self.failure, DataError):
            return "unusable"
        return "invalid" if self.error_count else "valid"

    @property
    def exit_code(self) -> int:
        return {"valid": 0, "invalid": 1, "unusable": 2}[self.status]

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path, "status": self.status, "schema": self.schema, "detected": self.detected,
            "rows": self.rows, "error_count": self.error_count, "rows_with_errors": self.rows_with_errors,
            "errors": [i.to_dict() for i in self.issues],
            "notes": self.notes,
            "failure": str(self.failure) if self.failure is not None and self.status == "unusable" else None,
        }


@dataclass
class BatchResult:
    """Errors in one batch: whole-column problems, the count of bad values, and the first ones as (row, field, message)."""

    problems: list[tuple[str, str]]
    count: int
    rows_with_errors: int
    issues: list[tuple[int, str, str]]


class Validator:
    """Checks batches against one style of a record schema; compiles a plan per distinct Arrow schema."""

    def __init__(self, schema: RecordSchema, style: Style) -> None:
        self.schema = schema
        self.style = style
        self._plans: dict[pa.Schema, tuple[StructPlan, list[tuple[str, str]], pa.Schema | None]] = {}

    @property
    def label(self) -> str:
        return label(self.schema, self.style)

    def plan(self, arrow_schema: pa.Schema) -> tuple[StructPlan, list[tuple[str, str]], pa.Schema | None]:
        """The compiled plan for `arrow_schema`, its column-level problems, and the schema to cast to first (if any)."""
        cached = self._plans.get(arrow_schema)
        if cached is None:
            plain = pa.schema([f.with_type(plain_type(f.type)) for f in arrow_schema])
            binder = Binder(self.schema.resolve)
            root = binder.bind_object(self.style.node, pa.struct(list(plain)), (), nullable=False, null_message="")
            cached = (root, binder.problems, plain if plain != arrow_schema else None)
            self._plans[arrow_schema] = cached
        return cached

    def check_batch(self, batch: pa.RecordBatch, max_errors: int = DEFAULT_MAX_ERRORS) -> BatchResult:
        """Validate one batch; rows in the result are 0-based batch positions."""
        root, problems, cast_to = self.plan(batch.schema)
        if cast_to is not None:
            batch = batch.cast(cast_to)
        out = Collector(max_errors)
        rows = pa.StructArray.from_arrays(batch.columns, fields=list(batch.schema)) if batch.num_columns else None
        if rows is not None and len(rows):
            root.check(rows, None, Level(), (), out)
        return BatchResult(problems, out.count, out.rows_with_errors(), out.issues())


def _resolve(schema: RecordSchema | str | os.PathLike[str] | None) -> RecordSchema | None:
    """A RecordSchema from a name or path (None stays None: detect per file)."""
    if schema is None or isinstance(schema, RecordSchema):
        return schema
    return get_schema(schema)


def _threads() -> int:
    """Worker threads for checking batches: Arrow and numpy release the GIL, so batches check in parallel."""
    return max(1, min(os.cpu_count() or 1, 8))


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="datakit-validate")


class _Merger:
    """Folds batch results into a FileReport in row order, keeping the first `budget` issues."""

    def __init__(self, report: FileReport, budget: int) -> None:
        self.report = report
        self.budget = budget
        self.seen_problems: set[tuple[str, str]] = set()

    def add(self, item: object, result: BatchResult) -> None:
        report = self.report
        batch = getattr(item, "batch", item)
        first_row = getattr(item, "first_row", report.rows)
        for problem in result.problems:
            if problem not in self.seen_problems:
                self.seen_problems.add(problem)
                report.error_count += 1
                if self.budget > 0:
                    report.issues.append(Issue(report.path, None, None, problem[0], problem[1]))
                    self.budget -= 1
        is_line = getattr(item, "lines", None) is not None
        shown = result.issues[: self.budget]
        rows = np.array([row for row, _, _ in shown], dtype=np.int64)
        numbers = item.row_numbers(rows) if hasattr(item, "row_numbers") else rows + first_row + 1
        for (row, field_path, message), number in zip(shown, numbers.tolist()):
            report.issues.append(Issue(report.path, number, first_row + row, field_path, message, is_line))
        self.budget -= min(self.budget, len(result.issues))
        report.error_count += result.count
        report.rows_with_errors += result.rows_with_errors
        report.rows += batch.num_rows

    def fail(self, error: DatakitError) -> None:
        report = self.report
        report.failure = error
        if isinstance(error, DataError):
            report.error_count += 1
            report.rows_with_errors += 1 if error.row is not None else 0
            if self.budget > 0:
                report.issues.append(Issue(report.path, error.row, None, error.field or "", error.message,
                                           error.row is not None))


def _choose(report: FileReport, kind: RecordSchema | None, style: str | None, arrow_schema: pa.Schema) -> Validator:
    """The validator for a file: the given schema (best style for its columns) or the detected one."""
    if kind is not None:
        validator = Validator(kind, kind.style(style) if style else pick_style(kind, arrow_schema))
    else:
        detected = detect_style(arrow_schema)
        validator = Validator(detected.schema, detected.style)
        report.detected = True
        ignored = unexplained_columns(detected, arrow_schema)
        if ignored:
            report.notes.append(f"column(s) {', '.join(ignored)} are not part of {detected.label} and were not "
                                "checked; pass --schema to check the file as another kind")
    report.schema = validator.label
    return validator


def validate_batches(
    batches: Iterable[object],
    path: str,
    schema: RecordSchema | str | None = None,
    style: str | None = None,
    max_errors: int = DEFAULT_MAX_ERRORS,
    threads: int | None = None,
) -> FileReport:
    """Validate a stream of batches from one file (`datakit.io.SourceBatch` or plain `pa.RecordBatch`).

    With no `schema`, the record kind is detected from the first batch's columns. Batches are checked on
    `threads` worker threads (default: one per core) while the next ones are read. Reader errors end the
    report: a DataError counts as one invalid row, anything else makes the file unusable.
    """
    report = FileReport(path)
    merger = _Merger(report, max_errors)
    kind = _resolve(schema)
    workers = threads or _threads()
    pending: deque[tuple[object, Future[BatchResult]]] = deque()
    validator: Validator | None = None
    try:
        for item in batches:
            batch = getattr(item, "batch", item)
            if validator is None:
                validator = _choose(report, kind, style, batch.schema)
            if workers == 1:
                merger.add(item, validator.check_batch(batch, merger.budget))
                continue
            pending.append((item, _pool(workers).submit(validator.check_batch, batch, merger.budget)))
            while len(pending) > 2 * workers:
                done_item, future = pending.popleft()
                merger.add(done_item, future.result())
        while pending:
            done_item, future = pending.popleft()
            merger.add(done_item, future.result())
    except DatakitError as e:
        while pending:
            done_item, future = pending.popleft()
            merger.add(done_item, future.result())
        merger.fail(e)
    finally:
        for _, future in pending:
            future.cancel()
    return report


def validate_table(
    table: pa.Table | pa.RecordBatch,
    schema: RecordSchema | str | None = None,
    style: str | None = None,
    max_errors: int = DEFAULT_MAX_ERRORS,
    path: str = "<table>",
    batch_size: int = 131_072,
) -> FileReport:
    """Validate an in-memory Arrow table (row numbers in the report are 1-based table rows)."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if table.num_rows == 0:
        return validate_batches([pa.RecordBatch.from_pylist([], schema=table.schema)], path, schema, style, max_errors)
    return validate_batches(table.to_batches(max_chunksize=batch_size), path, schema, style, max_errors)


@dataclass
class Validation:
    """The outcome of validating one or more paths: a report per data file and the files skipped."""

    files: list[FileReport] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    max_errors: int = DEFAULT_MAX_ERRORS

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def error_count(self) -> int:
        return sum(f.error_count for f in self.files)

    @property
    def shown(self) -> int:
        return sum(len(f.issues) for f in self.files)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def no_rows(self) -> bool:
        """Nothing was validated although every file could be read: an empty dataset is a mistake, not a pass."""
        return bool(self.files) and self.rows == 0 and not self.count("unusable") and not self.error_count

    @property
    def exit_code(self) -> int:
        """0 when every file is valid, 1 when some data is invalid, 2 when some input is unusable or empty."""
        if not self.files or self.count("unusable") or self.no_rows:
            return 2
        return 1 if self.count("invalid") else 0

    def to_dict(self) -> dict[str, object]:
        return {
            "status": {0: "valid", 1: "invalid", 2: "unusable"}[self.exit_code],
            "exit_code": self.exit_code,
            "rows": self.rows,
            "error_count": self.error_count,
            "files": [f.to_dict() for f in self.files],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }


def validate(
    refs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    schema: RecordSchema | str | None = None,
    style: str | None = None,
    max_errors: int = DEFAULT_MAX_ERRORS,
    batch_size: int = 65_536,
    progress: bool = False,
) -> Validation:
    """Validate every data file under `refs` (files, directories or Hub datasets) in bounded memory.

    `progress` shows a bar on stderr counting rows. Example:
    `datakit.records.validate("data/", schema="preference").exit_code`.
    """
    from tqdm import tqdm

    from datakit import io

    kind = _resolve(schema)
    if isinstance(refs, (str, os.PathLike)):
        refs = [refs]
    result = Validation(max_errors=max_errors)
    budget = max_errors
    with tqdm(desc="validating", unit=" rows", unit_scale=True, disable=not progress, leave=False) as bar:
        for ref in refs:
            try:
                listing = io.list_data_files(ref)
            except InputError as e:
                result.files.append(FileReport(e.path or str(ref), failure=e))
                continue
            result.skipped.extend(listing.skipped)
            for data_file in listing.files:
                batches = _counted(io.scan(data_file, batch_size=batch_size), bar)
                report = validate_batches(batches, data_file.path, kind, style, budget)
                budget -= len(report.issues)
                result.files.append(report)
    return result


def _counted(items: Iterable[Any], bar: Any) -> Iterator[Any]:
    """Pass batches through, advancing a progress bar by their rows."""
    for item in items:
        bar.update(getattr(item, "batch", item).num_rows)
        yield item
