"""Pairing ranked responses: best against worst, ties and identical texts dropped, never chosen == rejected."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from datakit.label.pairing import best_and_worst
from datakit.pipeline import run
from datakit.records import validate_table
from tests.pipeline.conftest import read_output, write_recipe


def reply(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


PROMPT = [{"role": "user", "content": "Say something."}]
ROWS = [
    {"prompt": PROMPT, "completions": [reply("a"), reply("b"), reply("c")], "scores": [0.1, 2.0, -1.0]},
    {"prompt": PROMPT, "completions": [reply("a"), reply("b")], "scores": [1.0, 1.0]},
    {"prompt": PROMPT, "completions": [reply("same"), reply("same")], "scores": [1.0, 0.0]},
    {"prompt": PROMPT, "completions": [reply("x"), reply("y")], "scores": [0.5, 0.4]},
]


def test_best_and_worst_breaks_ties_by_position():
    assert best_and_worst([1.0, 3.0, 3.0, -2.0, -2.0]) == (1, 3)


def test_pair_step(tmp_path):
    data = tmp_path / "ranked.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), data)
    recipe = write_recipe(tmp_path / "p.yaml", [
        {"id": "load", "uses": "read", "with": {"path": str(data)}},
        {"id": "pairs", "uses": "pair", "with": {"min_margin": 0.2}},
        {"id": "save", "uses": "write", "with": {"schema": "preference"}},
    ], name="p", output=str(tmp_path / "p"), shard_rows=2)
    result = run(recipe)
    out = read_output(result.output())
    assert out.num_rows == 1
    row = out.to_pylist()[0]
    assert row["chosen"] == reply("b") and row["rejected"] == reply("c")
    assert (row["score_chosen"], row["score_rejected"]) == (2.0, -1.0)
    assert "completions" not in out.column_names and "scores" not in out.column_names
    step = next(s for s in result.summary["steps"] if s["id"] == "pairs")
    assert step["dropped"] == {"tie": 2, "identical": 1}
    report = validate_table(out, "preference")
    assert report.rows == 1 and report.error_count == 0 and report.failure is None
