"""The Magpie selection rules: each rule drops under its own reason, and the counts add up."""

from __future__ import annotations

import pyarrow as pa
import pytest

from datakit.errors import RecipeError
from datakit.pipeline import run
from tests.pipeline.conftest import read_output, write_recipe

ROWS = [
    {"instruction": "Explain tides.", "input_quality": "good", "instruct_reward": 1.5, "difficulty": "easy",
     "task_category": "Information seeking"},
    {"instruction": "List three:", "input_quality": "excellent", "instruct_reward": 0.0, "difficulty": "hard",
     "task_category": "Brainstorming"},
    {"instruction": "Why?", "input_quality": "poor", "instruct_reward": 3.0, "difficulty": "medium",
     "task_category": "Reasoning"},
    {"instruction": "Sum 2 and 2.", "input_quality": "good", "instruct_reward": -12.0, "difficulty": "very easy",
     "task_category": "Math"},
    {"instruction": "Fix:\na\nb\nc\nd\ne\nf", "input_quality": "good", "instruct_reward": 2.0, "difficulty": "hard",
     "task_category": "Coding & Debugging"},
    {"instruction": "Plan:\na\nb\nc\nd\ne\nf", "input_quality": "good", "instruct_reward": 2.0, "difficulty": "hard",
     "task_category": "Planning"},
    {"instruction": "Tag failed", "input_quality": None, "instruct_reward": 2.0, "difficulty": "hard",
     "task_category": "Others"},
]


def run_filter(tmp_path, params: dict, name: str = "f"):
    data = tmp_path / "rows.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), data)
    recipe = write_recipe(tmp_path / f"{name}.yaml", [
        {"id": "load", "uses": "read", "with": {"path": str(data)}},
        {"id": "keep", "uses": "magpie_filter", "with": params},
        {"id": "save", "uses": "write"},
    ], name=name, output=str(tmp_path / name), shard_rows=3)
    result = run(recipe)
    step = next(s for s in result.summary["steps"] if s["id"] == "keep")
    return read_output(result.output()).column("instruction").to_pylist(), step["dropped"]


def test_reference_rules(tmp_path):
    kept, dropped = run_filter(tmp_path, {})
    assert kept == ["Explain tides.", "Fix:\na\nb\nc\nd\ne\nf", "Plan:\na\nb\nc\nd\ne\nf"]
    assert dropped == {"input_quality": 2, "low_reward": 1, "trailing_colon": 1}


def test_newline_and_difficulty_rules(tmp_path):
    kept, dropped = run_filter(tmp_path, {"max_newlines": 4, "min_difficulty": "medium", "input_quality": None,
                                          "min_reward": None}, name="g")
    assert kept == ["Why?", "Fix:\na\nb\nc\nd\ne\nf", "Tag failed"]
    assert dropped == {"too_easy": 2, "trailing_colon": 1, "too_many_lines": 1}


def test_missing_tag_column_names_the_parameter(tmp_path):
    with pytest.raises(RecipeError) as info:
        run_filter(tmp_path, {"reward_column": "reward"}, name="h")
    assert info.value.field == "steps.keep.with.reward_column"
