"""Pairing ranked responses: best against worst, every pair, or best against a seeded random lower one; ties and
identical texts dropped by name, never chosen == rejected, ids from content, draws reproducible across shardings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.errors import RecipeError
from datakit.generate.rows import content_id
from datakit.label.pairing import best_and_worst, pick_all_pairs, pick_best_random, pick_best_worst
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


def run_pair(tmp_path: Path, rows: list[dict[str, Any]], name: str = "p", seed: int = 7, shard_rows: int = 2,
             **params: Any):
    data = tmp_path / f"{name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    recipe = write_recipe(tmp_path / f"{name}.yaml", [
        {"id": "load", "uses": "read", "with": {"path": str(data)}},
        {"id": "pairs", "uses": "pair", "with": params},
        {"id": "save", "uses": "write", "with": {"schema": "preference"}},
    ], name=name, seed=seed, output=str(tmp_path / name), shard_rows=shard_rows)
    result = run(recipe)
    out = read_output(result.output())
    step = next(s for s in result.summary["steps"] if s["id"] == "pairs")
    assert validate_table(out, "preference").error_count == 0
    return out, step


def texts(out: pa.Table) -> list[tuple[str, str, float, float]]:
    return [(r["chosen"][0]["content"], r["rejected"][0]["content"], r["score_chosen"], r["score_rejected"])
            for r in out.to_pylist()]


def test_best_and_worst_breaks_ties_by_position():
    assert best_and_worst([1.0, 3.0, 3.0, -2.0, -2.0]) == (1, 3)


def test_strategies_on_one_row():
    options = ["p", "q", "p", "r", "s"]
    scores = np.array([3.0, 1.0, 2.0, 2.95, 0.0])
    assert pick_best_worst(options, scores, 0.0, 0) == ([(0, 4)], {})
    assert pick_best_worst(["p", "p"], np.array([1.0, 0.0]), 0.0, 0) == ([], {"identical": 1})
    assert pick_best_worst(["p", "q"], np.array([1.0, 0.5]), 0.5, 0) == ([], {"tie": 1})
    # 10 pairs: 0-2 is (p, p); 0-3 is within the margin; 1-2 and 2-4 repeat the texts of 0-1 and 0-4.
    pairs, dropped = pick_all_pairs(options, scores, 0.1, 0)
    assert pairs == [(0, 1), (0, 4), (3, 1), (1, 4), (3, 2), (3, 4)]
    assert dropped == {"tie": 1, "identical": 1, "duplicate": 2}
    pairs, dropped = pick_all_pairs(["p", "q", "p"], np.array([3.0, 1.0, 2.0]), 0.0, 0)
    assert pairs == [(0, 1)] and dropped == {"identical": 1, "duplicate": 1}
    assert pick_all_pairs(["p"], np.array([1.0]), 0.0, 0) == ([], {"too_few_completions": 1})
    # best_random: the best (0) against one of 1, 4 (2 is a copy of the best, 3 is within the margin).
    drawn = {pick_best_random(options, scores, 0.1, seed)[0][0] for seed in range(40)}
    assert drawn == {(0, 1), (0, 4)}
    assert pick_best_random(options, scores, 0.1, 5) == pick_best_random(options, scores, 0.1, 5)
    assert pick_best_random(["p", "q", "p"], np.array([3.0, 2.9, 1.0]), 0.5, 0) == ([], {"identical": 1})
    assert pick_best_random(["p", "q"], np.array([3.0, 2.9]), 0.5, 0) == ([], {"tie": 1})


def test_pair_step_best_worst(tmp_path):
    out, step = run_pair(tmp_path, ROWS, min_margin=0.2)
    assert texts(out) == [("b", "c", 2.0, -1.0)]
    assert "completions" not in out.column_names and "scores" not in out.column_names
    assert step["dropped"] == {"tie": 2, "identical": 1}
    assert out.column("id").to_pylist() == [content_id("preference", PROMPT, reply("b"), reply("c"))]


def test_pair_step_all_pairs(tmp_path):
    rows = ROWS + [
        {"prompt": PROMPT, "completions": [reply("p"), reply("q"), reply("p")], "scores": [3.0, 1.0, 2.0]},
        {"prompt": PROMPT, "completions": [reply("alone")], "scores": [1.0]},
    ]
    out, step = run_pair(tmp_path, rows, strategy="all_pairs", min_margin=0.2)
    assert texts(out) == [("b", "a", 2.0, 0.1), ("a", "c", 0.1, -1.0), ("b", "c", 2.0, -1.0), ("p", "q", 3.0, 1.0)]
    assert step["dropped"] == {"tie": 2, "identical": 2, "duplicate": 1, "too_few_completions": 1}
    assert (step["in"], step["out"], step["failed"]) == (6, 4, 0)
    assert len(set(out.column("id").to_pylist())) == 4


def best_random_rows() -> list[dict[str, Any]]:
    rows = []
    for i in range(24):
        prompt = [{"role": "user", "content": f"Question {i}?"}]
        completions = [reply(f"answer {i}.{j}") for j in range(5)]
        rows.append({"prompt": prompt, "completions": completions, "scores": [4.0, 0.0, 1.0, 3.0, 2.0]})
    rows.append({"prompt": PROMPT, "completions": [reply("s"), reply("t")], "scores": [1.0, 1.0]})
    rows.append({"prompt": PROMPT, "completions": [reply("s"), reply("s")], "scores": [4.0, 1.0]})
    return rows


def test_pair_step_best_random_is_seeded_per_row(tmp_path):
    rows = best_random_rows()
    out, step = run_pair(tmp_path, rows, name="a", strategy="best_random", min_margin=1.5)
    assert step["dropped"] == {"tie": 1, "identical": 1} and step["out"] == 24
    drawn = {}
    for row in out.to_pylist():
        i, j = row["chosen"][0]["content"].split()[1].split(".")
        rejected = int(row["rejected"][0]["content"].split(".")[1])
        assert j == "0" and row["score_chosen"] == 4.0
        assert rejected in (1, 2, 4) and row["score_rejected"] == rows[int(i)]["scores"][rejected]  # gap > 1.5
        drawn[int(i)] = rejected
    assert set(drawn.values()) == {1, 2, 4}  # the draw differs between rows

    # Another sharding, rows in reverse order: the same row draws the same pair (seeds follow content).
    again, _ = run_pair(tmp_path, rows[::-1], name="b", strategy="best_random", min_margin=1.5, shard_rows=5)
    assert sorted(again.column("id").to_pylist()) == sorted(out.column("id").to_pylist())
    # Another run seed draws differently.
    other, _ = run_pair(tmp_path, rows, name="c", seed=8, strategy="best_random", min_margin=1.5)
    assert other.num_rows == 24 and other.column("id").to_pylist() != out.column("id").to_pylist()


def test_rows_whose_scores_do_not_fit_fail(tmp_path):
    rows = [
        {"prompt": PROMPT, "completions": [reply("a"), reply("b")], "scores": [1.0]},
        ROWS[0],
        {"prompt": PROMPT, "completions": [reply("a"), reply("b")], "scores": [1.0, None]},
        {"prompt": PROMPT, "completions": [reply("a"), reply("b")], "scores": None},
    ]
    out, step = run_pair(tmp_path, rows, strategy="all_pairs", shard_rows=4)
    assert (step["out"], step["failed"]) == (3, 3)
    failed = pq.read_table(sorted(Path(step["failed_rows"]).glob("*.parquet"))).to_pylist()
    assert [r["_error"] for r in failed] == ["completions and scores differ in length",
                                             "a score is missing or not a finite number",
                                             "completions and scores differ in length"]


@pytest.mark.parametrize(("params", "key", "message"), [
    ({"strategy": "best_wrost"}, "strategy", "best_worst"),
    ({"min_margin": -1}, "min_margin", "min_margin must be 0 or more"),
])
def test_bad_params_name_the_key(tmp_path, params, key, message):
    with pytest.raises(RecipeError, match=message) as info:
        run_pair(tmp_path, ROWS, **params)
    assert info.value.field == f"steps.pairs.with.{key}"


def test_missing_columns_are_named(tmp_path):
    rows = [{"prompt": PROMPT, "completions": [reply("a"), reply("b")]}]
    with pytest.raises(RecipeError, match="column 'scores' is not in the data"):
        run_pair(tmp_path, rows)
