"""Every broken row in the corpus gives exactly its expected errors, on its own line, and valid rows give none."""

from __future__ import annotations

from collections import defaultdict

import pytest

from datakit.records import validate
from tests.conftest import write_jsonl
from tests.records.broken_rows import CASES, VALID

BY_SCHEMA: dict[str, list[tuple[dict, list[tuple[str, str]]]]] = defaultdict(list)
for _schema, _row, _expected in CASES:
    BY_SCHEMA[_schema].append((_row, _expected))


@pytest.mark.parametrize("schema", sorted(BY_SCHEMA))
def test_each_broken_row_reports_its_errors_on_its_line(tmp_path, schema):
    rows, expected = [], set()
    for row, errors in BY_SCHEMA[schema]:
        rows.append(VALID[schema])
        rows.append(row)
        expected.update((len(rows), field, message) for field, message in errors)
    rows.append(VALID[schema])
    path = write_jsonl(tmp_path / f"{schema}.jsonl", rows)

    result = validate(path, schema=schema, max_errors=1000)

    [report] = result.files
    found = {(issue.row, issue.field, issue.message) for issue in report.issues}
    assert found == expected
    assert report.error_count == len(expected)
    assert report.rows == len(rows)
    assert report.rows_with_errors == len(BY_SCHEMA[schema])
    assert all(issue.is_line and issue.index == issue.row - 1 for issue in report.issues)
    assert result.exit_code == 1


@pytest.mark.parametrize("schema", sorted(VALID))
def test_valid_rows_of_each_kind_pass_with_detection(tmp_path, schema):
    path = write_jsonl(tmp_path / "ok.jsonl", [VALID[schema]] * 3)
    result = validate(path)
    [report] = result.files
    assert report.status == "valid", [str(i) for i in report.issues]
    assert report.detected and report.schema.split(" ")[0] == schema
    assert result.exit_code == 0
