"""The `datakit` command: exit codes, output formats, and clear errors (never a traceback) for user mistakes."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.cli import main
from tests.conftest import DATA, REPO, write_jsonl
from tests.records.broken_rows import CASES, VALID, A, U

EXAMPLES = REPO / "datakit" / "examples"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_examples_are_valid(capsys):
    code, out, _ = run(capsys, "validate", EXAMPLES)
    assert code == 0
    assert "8 files, 218 rows: 8 valid, 0 invalid" in out
    assert "preference.jsonl: 3 rows, preference (conversational), detected: valid" in out


def test_all_trl_sample_rows_are_valid(capsys):
    code, out, _ = run(capsys, "validate", DATA / "trl_zen")
    assert code == 0
    assert out.splitlines()[-1] == "26 files, 247 rows: 26 valid, 0 invalid"


def test_broken_rows_give_row_precise_lines(capsys, tmp_path):
    rows = [VALID["preference"]] + [row for schema, row, _ in CASES if schema == "preference"]
    path = write_jsonl(tmp_path / "broken.jsonl", rows)
    code, out, _ = run(capsys, "validate", path, "--max-errors", "100")
    assert code == 1
    expected = [f"{path}:{line}: {field}: {message}" for line, (schema, row, errors) in
                enumerate([c for c in CASES if c[0] == "preference"], start=2) for field, message in errors]
    error_lines = [line for line in out.splitlines() if line.startswith(f"{path}:") and not line.startswith(f"{path}: ")]
    assert sorted(error_lines) == sorted(expected)
    assert f"{path}: {len(rows)} rows, preference (conversational), detected: invalid, {len(expected)} errors" in out


@pytest.mark.parametrize(
    ("name", "content", "code", "message"),
    [
        ("truncated.jsonl", b'{"text": "a"}\n{"text": "b', 2, ':2: invalid JSON: Unterminated string starting at (column 10); '
                                                               "the file looks truncated"),
        ("bad_utf8.jsonl", b'{"text": "a"}\n{"text": "\xff"}\n{"text": "c"}\n', 2, ":2: invalid UTF-8 (byte 0xff at column 11)"),
        ("empty.jsonl", b"", 2, ": file is empty"),
        ("not_objects.jsonl", b'{"text": "a"}\n[1, 2]\n', 2, ":2: expected a JSON object, found array"),
        ("conflict.jsonl", b'{"text": "a"}\n{"text": 5}\n', 1, ":2: text: found number where earlier rows have string"),
    ],
)
def test_malformed_json_lines(capsys, tmp_path, name, content, code, message):
    path = tmp_path / name
    path.write_bytes(content)
    got, out, _ = run(capsys, "validate", path)
    assert got == code
    assert f"{path}{message}" in out


def test_compressed_json_lines_are_read(capsys, tmp_path):
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "hello"}\n{"text": " "}\n'))
    code, out, _ = run(capsys, "validate", path)
    assert code == 1
    assert f"{path}:2: text: is blank (whitespace only)" in out


def test_wrong_column_type_in_parquet(capsys, tmp_path):
    path = tmp_path / "kto.parquet"
    pq.write_table(pa.table({"prompt": ["p"], "completion": ["c"], "label": ["yes"]}), path)
    code, out, _ = run(capsys, "validate", path)
    assert code == 1
    assert f"{path}: label: expected boolean, found string" in out


def test_missing_column_with_an_explicit_schema(capsys, tmp_path):
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"prompt": ["p"], "chosen": ["c"]}), path)
    code, out, _ = run(capsys, "validate", path, "--schema", "preference")
    assert code == 1
    assert f"{path}: rejected: missing column" in out


def test_parquet_errors_give_one_based_row_numbers(capsys, tmp_path):
    path = tmp_path / "sft.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "", "d"]}), path, row_group_size=2)
    code, out, _ = run(capsys, "validate", path)
    assert code == 1
    assert f"{path}:3: text: is empty" in out


def test_directory_of_mixed_files(capsys, tmp_path):
    write_jsonl(tmp_path / "a_sft.jsonl", [VALID["sft"]])
    write_jsonl(tmp_path / "b_pref.jsonl", [VALID["preference"], {**VALID["preference"], "rejected": [A("4")]}])
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "c_text.parquet")
    (tmp_path / "d_broken.jsonl").write_bytes(b'{"text": "x"}\n{"text": ')
    (tmp_path / "notes.txt").write_text("not data")
    code, out, _ = run(capsys, "validate", tmp_path)
    assert code == 2  # one file is unusable
    assert f"{tmp_path / 'a_sft.jsonl'}: 1 row, sft (conversational), detected: valid" in out
    assert f"{tmp_path / 'b_pref.jsonl'}:2: rejected: is identical to chosen" in out
    assert f"{tmp_path / 'c_text.parquet'}: 1 row, sft (standard), detected: valid" in out
    assert f"{tmp_path / 'd_broken.jsonl'}: unusable" in out
    assert f"{tmp_path / 'notes.txt'}: skipped, not a data file (.txt)" in out
    assert out.splitlines()[-1] == "4 files, 5 rows: 2 valid, 1 invalid, 1 unusable; 1 error"


def test_zero_rows_in_total_is_not_a_pass(capsys, tmp_path):
    path = tmp_path / "none.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    code, out, _ = run(capsys, "validate", path)
    assert code == 2
    assert "no rows to validate" in out


def test_json_format(capsys, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [VALID["preference"], {**VALID["preference"], "prompt": [U("")]}])
    code, out, _ = run(capsys, "validate", path, "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["status"] == "invalid" and doc["rows"] == 2 and doc["error_count"] == 1
    [error] = doc["files"][0]["errors"]
    assert error == {"path": str(path), "row": 2, "index": 1, "field": "prompt[0].content", "message": "is empty", "line": 2}


def test_github_format_annotates_lines(capsys, tmp_path):
    path = write_jsonl(tmp_path / "a,b.jsonl", [{"text": "ok"}, {"text": "100%\n"}, {"text": ""}])
    pq.write_table(pa.table({"text": ["x", " "]}), tmp_path / "t.parquet")
    code, out, _ = run(capsys, "validate", tmp_path, "--format", "github")
    assert code == 1
    assert f"::error file={str(path).replace(',', '%2C')},line=3,title=datakit validate::text: is empty" in out
    assert f"::error file={tmp_path / 't.parquet'},title=datakit validate::row 2: text: is blank (whitespace only)" in out


def test_max_errors_limits_output_but_not_counts(capsys, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": ""}] * 30)
    code, out, _ = run(capsys, "validate", path, "--max-errors", "2")
    assert code == 1
    assert sum(1 for line in out.splitlines() if ": text: is empty" in line) == 2
    assert "30 errors (first 2 shown; raise --max-errors to see more)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "missing.jsonl"], "missing.jsonl: no such file or directory"),
        (["validate", "x.jsonl", "--schema", "nope"], "unknown schema 'nope'"),
        (["validate", "x.jsonl", "--max-errors", "-1"], "must be 0 or more"),
        (["validate", "x.jsonl", "--format", "xml"], "invalid choice: 'xml'"),
        (["validate"], "the following arguments are required: PATH"),
        (["validate", "x.jsonl", "--style", "conversational"], "--style needs --schema"),
        (["validate", "x.jsonl", "--schema", "preference", "--style", "fancy"], "has no style 'fancy'"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_user_mistakes_exit_2_with_a_clear_message(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_text('{"text": "a"}\n')
    code, out, err = run(capsys, *args)
    assert code == 2
    assert message in out + err


def test_schemas_lists_and_prints(capsys):
    code, out, _ = run(capsys, "schemas")
    assert code == 0
    assert "preference" in out and "conversational, standard" in out and "DPOTrainer" in out
    code, out, _ = run(capsys, "schemas", "unpaired_preference")
    assert code == 0 and json.loads(out)["title"] == "Unpaired preference"
    code, out, _ = run(capsys, "schemas", "preference", "--arrow")
    assert code == 0 and "# preference (standard)\nprompt: string not null" in out


def test_hub_refs_fail_cleanly_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-m", "datakit", "validate", "hf://datasets/someone/nothing@v1.0.0"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "hf://datasets/someone/nothing@v1.0.0" in proc.stdout


def test_module_entry_point_runs(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "hello"}])
    proc = subprocess.run([sys.executable, "-m", "datakit", "validate", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "1 row, sft (standard), detected: valid" in proc.stdout


def test_progress_bar_goes_to_stderr(capsys, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "hello"}] * 5)
    code, out, err = run(capsys, "validate", path, "--progress")
    assert code == 0
    assert "validating" in err and "rows" in err
    assert "validating" not in out
