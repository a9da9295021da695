"""`datakit classifier train`: train a quality classifier from a labeled JSON Lines file, apply it with
quality_filter in a recipe, and refuse bad input with exit 2 and no model written."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.cli import main
from tests.conftest import write_jsonl
from tests.curate.test_classifiers import quality_rows, run_steps

SMALL = ["--epochs", "25", "--dim", "16", "--bucket", "10000"]


def test_train_then_filter_in_a_recipe(tmp_path, capsys):
    rows = [{"text": r["text"], "reward": r["reward"]} for r in quality_rows(400)]
    data = write_jsonl(tmp_path / "labeled.jsonl", rows)
    model = tmp_path / "quality.bin"
    code = main(["classifier", "train", str(data), "--text-column", "text", "--label-column", "reward",
                 "--threshold", "0.5", "--valid-fraction", "0.25", "--seed", "3", "--output", str(model), *SMALL])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "trained on 300 rows" in out and "held out 100 rows" in out
    assert "accuracy 1.0000, precision 1.0000, recall 1.0000 (positive: good)" in out
    sidecar = json.loads((tmp_path / "quality.bin.json").read_text())
    assert sidecar["threshold"] == 0.5 and sidecar["labels"] == ["bad", "good"] and sidecar["seed"] == 3
    assert sidecar["counts"]["rows"] == 400 and sidecar["metrics"]["accuracy"] == 1.0

    rows = quality_rows(40, seed=11)  # new rows, half good and half bad
    table, steps = run_steps(tmp_path, rows, [
        {"id": "quality", "uses": "quality_filter", "with": {"model": str(model), "score_column": "quality"}},
    ], name="apply", shard_rows=16)
    assert steps["quality"]["in"] == 40 and steps["quality"]["dropped"] == {"low_quality": 20}
    assert set(table.column("label").to_pylist()) == {"good"}
    assert all(s >= 0.5 for s in table.column("quality").to_pylist())


def test_train_from_parquet_with_boolean_labels_prints_json(tmp_path, capsys):
    rows = [{"body": r["text"], "keep": r["label"] == "good"} for r in quality_rows(120)]
    data = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    code = main(["classifier", "train", str(data), "--text-column", "body", "--label-column", "keep",
                 "-o", str(tmp_path / "m.ftz"), "--json", *SMALL])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["labels"] == ["bad", "good"] and report["counts"]["valid"]
    assert sum(report["counts"]["train"].values()) == 108


@pytest.mark.parametrize(("rows", "args", "message"), [
    ([{"text": "a", "label": "good"}] * 5, [], "at least two classes"),
    ([{"text": "a", "label": "good"}, {"text": "b", "label": "bad"}], ["--label-column", "score"],
     "label column 'score' is not in the data"),
    ([{"text": "a", "score": 0.2}, {"text": "b", "score": 0.8}], ["--label-column", "score"], "give a threshold"),
    ([{"text": "a", "label": "good"}, {"text": "b", "label": "bad"}], ["--valid-fraction", "1.5"],
     "validation fraction"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, rows, args, message):
    data = write_jsonl(tmp_path / "data" / "rows.jsonl", rows)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["classifier", "train", str(data), "-o", str(out_dir / "m.bin"), *args]) == 2
    assert message in capsys.readouterr().err
    assert list(out_dir.iterdir()) == []


def test_usage_errors(tmp_path, capsys):
    assert main(["classifier"]) == 2
    assert "name an action" in capsys.readouterr().err
    assert main(["classifier", "train", str(tmp_path / "x.jsonl")]) == 2
    assert "--output" in capsys.readouterr().err
    assert main(["classifier", "train", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "m.bin")]) == 2
    assert list(tmp_path.iterdir()) == []
