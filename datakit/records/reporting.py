"""Render a validation as plain text, JSON, or GitHub Actions annotations."""

from __future__ import annotations

import json

from datakit.records.validate import FileReport, Issue, Validation


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _file_summary(report: FileReport) -> str:
    if report.status == "unusable":
        return f"{report.path}: unusable"
    kind = report.schema or "no schema"
    if report.detected:
        kind += ", detected"
    head = f"{report.path}: {_count(report.rows, 'row')}, {kind}"
    if report.status == "valid":
        return f"{head}: valid"
    rows = f" in {_count(report.rows_with_errors, 'row')}" if report.rows_with_errors else ""
    failure = report.failure
    stopped = f"; stopped at row {failure.row}" if failure is not None and failure.row is not None else ""
    return f"{head}: invalid, {_count(report.error_count, 'error')}{rows}{stopped}"


def _totals(result: Validation) -> str:
    parts = [f"{result.count('valid')} valid", f"{result.count('invalid')} invalid"]
    if result.count("unusable"):
        parts.append(f"{result.count('unusable')} unusable")
    line = f"{_count(len(result.files), 'file')}, {_count(result.rows, 'row')}: " + ", ".join(parts)
    if result.error_count:
        line += f"; {_count(result.error_count, 'error')}"
        if result.shown < result.error_count:
            line += f" (first {result.shown} shown; raise --max-errors to see more)"
    if result.no_rows:
        line += "; no rows to validate"
    return line


def render_text(result: Validation) -> str:
    """One line per error (`path:row: field: message`), a summary line per file, then the totals."""
    lines = []
    for report in result.files:
        if report.status == "unusable":
            lines.append(str(report.failure))
        else:
            lines.extend(str(issue) for issue in report.issues)
        lines.append(_file_summary(report))
        lines.extend(f"{report.path}: note: {note}" for note in report.notes)
    lines.extend(f"{path}: skipped, {reason}" for path, reason in result.skipped)
    lines.append(_totals(result))
    return "\n".join(lines)


def render_json(result: Validation) -> str:
    """The whole validation as one JSON document."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation(path: str, line: int | None, message: str) -> str:
    props = f"file={_escape_property(path)}"
    if line is not None:
        props += f",line={line}"
    return f"::error {props},title=datakit validate::{_escape_data(message)}"


def _issue_annotation(issue: Issue) -> str:
    text = (f"{issue.field}: " if issue.field else "") + issue.message
    if issue.row is not None and not issue.is_line:
        text = f"row {issue.row}: {text}"
    return _annotation(issue.path, issue.row if issue.is_line else None, text)


def render_github(result: Validation) -> str:
    """`::error file=...,line=...::...` workflow commands, so a GitHub Actions job marks each bad row; then the summaries."""
    lines = []
    for report in result.files:
        if report.status == "unusable" and report.failure is not None:
            failure = report.failure
            text = (f"{failure.field}: " if failure.field else "") + failure.message
            lines.append(_annotation(report.path, failure.row, text))
        else:
            lines.extend(_issue_annotation(issue) for issue in report.issues)
    for report in result.files:
        lines.append(_file_summary(report))
    lines.append(_totals(result))
    return "\n".join(lines)


RENDERERS = {"text": render_text, "json": render_json, "github": render_github}
