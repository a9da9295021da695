"""Labeling steps end to end on real vLLM and a tiny reward model: judge tags, reward scores, ranked candidates
and preference pairs. The models are random, so the checks are structural: allowed labels, counts that add up,
failed rows where they belong, finite scores of the right shape, and schemas."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from datakit.label.tags import LABELS
from datakit.pipeline import run
from datakit.records import validate_table
from tests.conftest import REPO, write_jsonl
from tests.generate.conftest import TinyModels, check_counts, failed_rows, step_summary, write_model_recipe
from tests.pipeline.conftest import read_output

INSTRUCTIONS = [
    "What is the capital of France?",
    "Write a short poem about the ocean.",
    "Explain why the sky is blue in two sentences.",
    "List three fruits that are red.",
    "How do I reverse a list in Python?",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 12?",
    "Give me a recipe for pancakes.",
    "Summarize the plot of a fairy tale about a cat.",
    "Why do leaves change color in autumn?",
]


@pytest.fixture(scope="module")
def instructions_file(tmp_path_factory) -> Path:
    rows = [{"id": f"ins-{i:02d}", "instruction": text} for i, text in enumerate(INSTRUCTIONS)]
    return write_jsonl(tmp_path_factory.mktemp("label-data") / "instructions.jsonl", rows)


def read_steps(path: Path, *steps: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": "load", "uses": "read", "with": {"path": str(path)}}, *steps]


# ---------------------------------------------------------------------------------------------------------------
# judge_tags


def test_judge_tags_only_allowed_labels(tiny_models: TinyModels, instructions_file, tmp_path):
    recipe = write_model_recipe(tmp_path, read_steps(
        instructions_file,
        {"id": "tags", "uses": "judge_tags", "with": {"model": "policy"}},
        {"id": "save", "uses": "write"},
    ), tiny_models, shard_rows=4)
    result = run(recipe)
    table = read_output(result.output())
    s = step_summary(result, "tags")
    assert s["in"] == len(INSTRUCTIONS) and s["out"] == table.num_rows and s["dropped"] == {}
    assert s["out"] + s["failed"] == s["in"] and s["out"] > 0
    assert s["metrics"]["tokens"] > 0
    for tag, labels in LABELS.items():
        assert table.schema.field(tag).type == pa.string()
        assert set(table.column(tag).to_pylist()) <= set(labels), tag
    failed = failed_rows(result, "tags")
    assert failed.num_rows == s["failed"]
    ids = table.column("id").to_pylist()
    if s["failed"]:  # e.g. an answer cut off at max_tokens: the row goes to the failed table with the raw answer
        ids += failed.column("id").to_pylist()
        assert all(e.startswith("judge answer") for e in failed.column("_error").to_pylist())
    assert sorted(ids) == [f"ins-{i:02d}" for i in range(len(INSTRUCTIONS))]  # every row out or failed, once
    check_counts(result)


def test_judge_tags_cut_off_answers_fail_into_the_failed_table(tiny_models, instructions_file, tmp_path):
    recipe = write_model_recipe(tmp_path, read_steps(
        instructions_file,
        {"id": "tags", "uses": "judge_tags",
         "with": {"model": "policy", "tags": ["difficulty", "language"], "max_tokens": 3}},
        {"id": "save", "uses": "write"},
    ), tiny_models, shard_rows=4)
    result = run(recipe)
    s = step_summary(result, "tags")
    assert (s["in"], s["out"], s["failed"]) == (len(INSTRUCTIONS), 0, len(INSTRUCTIONS))
    failed = failed_rows(result, "tags")
    assert failed.num_rows == len(INSTRUCTIONS)
    assert sorted(failed.column("instruction").to_pylist()) == sorted(INSTRUCTIONS)
    assert all(e.startswith("judge answer cut off at max_tokens") for e in failed.column("_error").to_pylist())
    table = read_output(result.output())
    assert table.num_rows == 0
    assert {"difficulty", "language"} <= set(table.column_names)
    assert not {"input_quality", "task_category"} & set(table.column_names)
    check_counts(result)


# ---------------------------------------------------------------------------------------------------------------
# reward and pair


def test_reward_scores_conversations(tiny_models, tmp_path):
    from datakit.engines import RewardSpec, load_reward_model

    examples = REPO / "datakit" / "examples" / "sft.jsonl"
    recipe = write_model_recipe(tmp_path, read_steps(
        examples,
        {"id": "scores", "uses": "reward", "with": {"model": "reward"}},
        {"id": "save", "uses": "write", "with": {"schema": "sft"}},
    ), tiny_models, shard_rows=3)
    result = run(recipe)
    table = read_output(result.output())
    assert table.num_rows == step_summary(result, "scores")["in"] > 0
    assert table.schema.field("instruct_reward").type == pa.float64()
    rewards = table.column("instruct_reward").to_pylist()
    assert all(isinstance(r, float) and math.isfinite(r) for r in rewards)
    # The same scores as the reward model gives each conversation on its own.
    model = load_reward_model(RewardSpec(**tiny_models.scorer))
    alone = [float(model.score([conv])[0]) for conv in table.column("messages").to_pylist()]
    np.testing.assert_allclose(rewards, alone, rtol=1e-4, atol=1e-4)
    assert validate_table(table, "sft").error_count == 0
    check_counts(result)


def test_ranked_candidates_scored_and_paired(tiny_models, instructions_file, tmp_path):
    recipe = write_model_recipe(tmp_path, read_steps(
        instructions_file,
        {"id": "candidates", "uses": "sample_responses",
         "with": {"model": "policy", "n": 5, "temperature": 1.0, "max_tokens": 64, "min_completions": 2}},
        {"id": "ranked", "uses": "reward", "with": {"model": "reward", "mode": "ranked"}},
        {"id": "save_ranked", "uses": "write", "with": {"schema": "ranked"}},
        {"id": "pairs", "uses": "pair", "input": "ranked"},
        {"id": "save", "uses": "write", "with": {"schema": "preference"}},
    ), tiny_models, shard_rows=5)
    result = run(recipe)
    check_counts(result)

    ranked = read_output(result.output("save_ranked"))
    assert ranked.num_rows == step_summary(result, "ranked")["out"] > 0
    assert validate_table(ranked, "ranked").error_count == 0
    assert ranked.schema.field("scores").type == pa.list_(pa.float64())
    for row in ranked.to_pylist():
        assert 2 <= len(row["completions"]) == len(row["scores"]) <= 5
        assert all(math.isfinite(x) for x in row["scores"])
        assert [m["role"] for m in row["prompt"]] == ["user"]
        assert all([m["role"] for m in c] == ["assistant"] and c[0]["content"].strip() for c in row["completions"])
    candidates = step_summary(result, "candidates")
    assert set(candidates["dropped"]) <= {"too_few_completions"} and candidates["metrics"]["tokens"] > 0

    pairs = read_output(result.output("save"))
    assert pairs.num_rows == step_summary(result, "pairs")["out"] > 0
    assert validate_table(pairs, "preference").error_count == 0
    assert not {"completions", "scores"} & set(pairs.column_names)
    by_prompt = {r["prompt"][0]["content"]: r for r in ranked.to_pylist()}
    for row in pairs.to_pylist():
        assert row["chosen"] != row["rejected"] and row["score_chosen"] > row["score_rejected"]
        source = by_prompt[row["prompt"][0]["content"]]
        scores = source["scores"]
        assert row["chosen"] == source["completions"][int(np.argmax(scores))]
        assert row["rejected"] == source["completions"][int(np.argmin(scores))]
        assert (row["score_chosen"], row["score_rejected"]) == (max(scores), min(scores))
