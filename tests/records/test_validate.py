"""Validation over Arrow data: layouts, batch boundaries, whole-column problems, detection and error limits."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from datakit.records import validate_table
from datakit.records.validate import validate_batches
from tests.records.broken_rows import A, U


def _issues(report):
    return [(i.row, i.field, i.message) for i in report.issues]


def _preference_rows(n, bad_every=0):
    rows = []
    for i in range(n):
        bad = bad_every and i % bad_every == 0
        rows.append({"prompt": [U(f"question {i}")], "chosen": [A("same" if bad else f"good {i}")],
                     "rejected": [A("same" if bad else f"bad {i}")]})
    return rows


def test_non_finite_scores_are_errors():
    table = pa.table({"prompt": ["p1", "p2", "p3"], "completions": [["a", "b"], ["c"], ["d"]],
                      "scores": [[0.5, math.nan], [math.inf], [-1.0]]})
    report = validate_table(table, schema="ranked")
    assert _issues(report) == [(1, "scores[1]", "nan is not a finite number"), (2, "scores[0]", "inf is not a finite number")]


def test_integer_scores_are_numbers():
    table = pa.table({"prompt": ["p"], "completions": [["a", "b"]], "scores": [[3, 1]]})
    assert validate_table(table, schema="ranked").status == "valid"


def test_row_numbers_stay_right_across_small_batches():
    table = pa.Table.from_pylist(_preference_rows(1000, bad_every=37))
    report = validate_table(table, batch_size=7, max_errors=1000)
    expected = [(i + 1, "rejected", "is identical to chosen") for i in range(0, 1000, 37)]
    assert _issues(report) == expected
    assert report.rows_with_errors == len(expected)


def test_sliced_tables_report_rows_of_the_slice():
    table = pa.Table.from_pylist(_preference_rows(100, bad_every=10)).slice(5, 50)
    report = validate_table(table, max_errors=100)
    assert [i.row for i in report.issues] == [6, 16, 26, 36, 46]


def test_large_view_and_dictionary_layouts_give_the_same_errors():
    rows = _preference_rows(20, bad_every=4)
    rows[3]["prompt"] = [{"role": "robot", "content": "   "}]
    plain = pa.Table.from_pylist(rows)
    expected = _issues(validate_table(plain, max_errors=100))
    assert expected
    via_polars = pl.from_arrow(plain).to_arrow()  # large_string / large_list or view layouts
    assert via_polars.schema != plain.schema
    assert _issues(validate_table(via_polars, max_errors=100)) == expected
    standard = pa.table({"prompt": pa.array(["a", "b", " "]).dictionary_encode(),
                         "chosen": pa.array(["x", "y", "z"], pa.string_view()), "rejected": pa.array(["x", "w", "v"], pa.large_string())})
    assert _issues(validate_table(standard)) == [(1, "rejected", "is identical to chosen"),
                                                 (3, "prompt", "is blank (whitespace only)")]


def test_assistant_turns_that_only_call_tools_are_valid():
    call = {"type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    messages = [U("Look it up"), {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "content": "found", "tool_calls": None}, A("Here it is.")]
    report = validate_table(pa.Table.from_pylist([{"messages": messages}]), schema="sft")
    assert report.status == "valid", _issues(report)


def test_wrong_column_type_is_one_column_level_error():
    table = pa.table({"prompt": ["p", "q"], "completion": ["a", "b"], "label": ["yes", "no"]})
    report = validate_table(table, schema="unpaired_preference")
    assert report.schema == "unpaired_preference (standard)"
    assert _issues(report) == [(None, "label", "expected boolean, found string")]
    assert report.status == "invalid"


def test_missing_column_is_reported_with_an_explicit_schema():
    table = pa.table({"prompt": ["p"], "chosen": ["a"]})
    report = validate_table(table, schema="preference")
    assert _issues(report) == [(None, "rejected", "missing column")]


def test_nested_field_of_the_wrong_type_names_its_path():
    table = pa.Table.from_pylist([{"prompt": [{"role": "user", "content": 42}], "completion": [A("a")]}])
    report = validate_table(table, schema="prompt_completion")
    assert _issues(report) == [(None, "prompt[].content", "expected string, found int64")]


def test_detection_names_the_nearest_kind_when_nothing_fits():
    report = validate_table(pa.table({"chosen": [[U("q"), A("a")]], "answer": ["a"]}))
    assert report.status == "invalid"
    [issue] = report.issues
    assert "match no datakit schema" in issue.message and "implicit_preference (conversational)" in issue.message
    assert "lacks column(s) rejected" in issue.message


def test_detection_notes_columns_the_detected_kind_does_not_check():
    report = validate_table(pa.table({"prompt": [[U("q")]], "chosen": [[A("a")]]}))
    assert report.schema == "prompt_only (conversational)" and report.status == "valid"
    assert report.notes == ["column(s) chosen are not part of prompt_only (conversational) and were not checked; "
                            "pass --schema to check the file as another kind"]


def test_detection_prefers_the_kind_that_explains_more_columns():
    table = pa.table({"prompt": ["p"], "completion": ["c"], "label": ["yes"]})
    report = validate_table(table)
    assert report.schema == "unpaired_preference (standard)"
    assert _issues(report) == [(None, "label", "expected boolean, found string")]


def test_detection_refuses_to_guess_between_equal_fits():
    table = pa.table({"prompt": ["p"], "completions": [["a"]], "scores": [[1.0]], "labels": [[True]]})
    report = validate_table(table)
    assert report.status == "unusable"
    assert "equally well" in str(report.failure) and "--schema" in str(report.failure)


def test_error_limit_keeps_the_first_errors_by_row_and_counts_all():
    rows = _preference_rows(50, bad_every=5)
    rows[2]["prompt"] = [U(" ")]
    report = validate_table(pa.Table.from_pylist(rows), max_errors=3)
    assert _issues(report) == [(1, "rejected", "is identical to chosen"), (3, "prompt[0].content", "is blank (whitespace only)"),
                               (6, "rejected", "is identical to chosen")]
    assert report.error_count == 11
    assert report.rows_with_errors == 11


def test_every_bad_row_counts_once_however_many_errors_it_has():
    rows = [{"prompt": [{"role": "x", "content": " "}, {"role": "y", "content": ""}], "chosen": [A("a")], "rejected": [A("a")]}] * 4
    report = validate_table(pa.Table.from_pylist(rows), max_errors=0)
    assert report.issues == []
    assert report.error_count == 4 * 5
    assert report.rows_with_errors == 4


def test_null_rows_inside_lists_do_not_leak_into_children():
    # Struct nulls must hide their children's values; the messages here are null at the struct level only.
    messages = pa.array([[{"role": "user", "content": "q"}, None, {"role": "assistant", "content": "a"}]],
                        type=pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))
    report = validate_table(pa.table({"messages": messages}), schema="sft")
    assert _issues(report) == [(1, "messages[1]", "is null")]


def test_empty_table_is_valid_with_zero_rows():
    table = pa.table({"text": pa.array([], pa.string())})
    report = validate_table(table, schema="sft")
    assert report.status == "valid" and report.rows == 0


def test_plain_record_batches_can_be_validated():
    batch = pa.RecordBatch.from_pylist([{"text": "hello"}, {"text": ""}])
    report = validate_batches([batch, batch], path="mem")
    assert _issues(report) == [(2, "text", "is empty"), (4, "text", "is empty")]


@pytest.mark.parametrize("n", [1, 3, 1000])
def test_distinct_compares_whole_conversations(n):
    rng = np.random.default_rng(n)
    rows = []
    for i in range(n):
        turns = int(rng.integers(1, 4))
        chosen = [A(f"a{i}-{k}") for k in range(turns)]
        rejected = list(chosen) if i % 2 else chosen[:-1] + [A("different")]
        rows.append({"chosen": [U("q")] + chosen, "rejected": [U("q")] + rejected})
    report = validate_table(pa.Table.from_pylist(rows), schema="implicit_preference", max_errors=10_000)
    identical = {i.row - 1 for i in report.issues if i.message == "is identical to chosen"}
    assert identical == {i for i in range(n) if i % 2}
