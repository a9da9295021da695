"""LLM-as-judge steps on a tiny random chat model through the real vLLM engine: ratings always in range, pairs
asked in both orders, consistent + inconsistent verdicts adding up, failed answers in the failed table, and
parameters checked before any model loads. The model is random, so only structure is asserted, never wording."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.errors import RecipeError
from datakit.generate.rows import content_id
from datakit.label.judge import rating_prompt, rating_schema, read_rating, split_reply, vote
from datakit.pipeline import run
from datakit.records import validate_table
from tests.generate.conftest import GenerateCalls, TinyModels, check_counts, failed_rows, step_summary
from tests.generate.conftest import write_model_recipe
from tests.pipeline.conftest import read_output, write_recipe


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def reply(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


RANKED = [
    {"id": "r0", "prompt": user("What is 2 + 2?"), "completions": [reply("4"), reply("5"), reply("Four.")]},
    {"id": "r1", "prompt": user("Name a color."), "completions": [reply("Blue."), reply("Blue."), reply("Red.")]},
    {"id": "r2", "prompt": user("Say hi."), "completions": [reply("Hi!"), reply("Hello.")]},
]
PREFERENCE = [
    {"id": "p0", "prompt": user("What is 2 + 2?"), "chosen": reply("4"), "rejected": reply("5"),
     "score_chosen": 2.0, "score_rejected": 1.0},
    {"id": "p1", "prompt": user("Name a color."), "chosen": reply("Blue."), "rejected": reply("Seven.")},
    {"id": "p2", "prompt": user("Say hi."), "chosen": reply("Hi!"), "rejected": reply("Bye.")},
    {"id": "p3", "prompt": user("Capital of Italy?"), "chosen": reply("Rome."), "rejected": reply("Milan.")},
    {"id": "p4", "prompt": user("Same twice?"), "chosen": reply("Yes."), "rejected": reply("Yes.")},
]
SFT = [
    {"id": "s0", "messages": user("What does 404 mean?") + reply("Not found.")},
    {"id": "s1", "messages": user("Prime?") + reply("2.") + user("Next?") + reply("3.")},
    {"id": "s2", "messages": user("Weather?") + [{"role": "assistant", "content": "Sunny."}]},
    {"id": "s3", "messages": user("No answer yet.")},
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("judge-data")
    files = {}
    for name, rows in (("ranked", RANKED), ("preference", PREFERENCE), ("sft", SFT)):
        files[name] = folder / f"{name}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), files[name])
    return files


def judge_recipe(tmp_path: Path, models: TinyModels, path: Path, *steps: dict[str, Any], **settings: Any) -> Path:
    return write_model_recipe(tmp_path, [{"id": "load", "uses": "read", "with": {"path": str(path)}}, *steps],
                              models, shard_rows=2, **settings)


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers


def test_rating_schema_prompt_and_answers():
    schema = rating_schema(5, reason=True, reason_chars=50)
    assert list(schema["properties"]) == ["reason", "rating"]  # the reason is written before the rating
    assert schema["properties"]["rating"]["enum"] == [1, 2, 3, 4, 5]
    assert read_rating('{"rating": 5}', 5) == (5, None)
    assert read_rating('{"reason": "ok", "rating": 1}', 5) == (1, "ok")
    assert read_rating('{"reason": "a\x0cb", "rating": 2}', 5) == (2, "a\x0cb")  # raw control characters
    assert [read_rating(t, 5) for t in ('{"rating": 6}', '{"rating": true}', '{"rating": "3"}', '{"rat', "[]")] \
        == [None] * 5
    text = rating_prompt(user("Q?"), reply("A."), scale=5, criteria="Be brief.")[0]["content"]
    assert "1 (worst) to 5 (best)" in text and "Be brief." in text and "<reply>\nA.\n</reply>" in text
    assert split_reply(SFT[1]["messages"]) == (SFT[1]["messages"][:3], SFT[1]["messages"][3:])
    assert split_reply(SFT[3]["messages"]) == (SFT[3]["messages"], [])
    # Answers name positions; votes name the incoming order (0: first, 1: second).
    assert (vote("A", False), vote("B", False), vote("A", True), vote("B", True), vote("tie", True)) \
        == (0, 1, 1, 0, None)


# ---------------------------------------------------------------------------------------------------------------
# judge_score


def test_judge_score_ranked_then_pair(tiny_models, data, tmp_path):
    recipe = judge_recipe(tmp_path, tiny_models, data["ranked"],
                          {"id": "rate", "uses": "judge_score", "with": {"model": "policy", "scale": 5,
                                                                         "criteria": "Prefer short replies."}},
                          {"id": "save_ranked", "uses": "write", "with": {"schema": "ranked"}},
                          {"id": "pairs", "uses": "pair", "input": "rate", "with": {"strategy": "all_pairs"}},
                          {"id": "save", "uses": "write", "with": {"schema": "preference"}})
    result = run(recipe)
    ranked = read_output(result.output("save_ranked"))
    s = step_summary(result, "rate")
    assert (s["in"], s["out"], s["failed"]) == (3, 3, 0)
    assert s["metrics"]["requests"] == 8 and s["metrics"]["tokens"] > 0  # one request per completion
    assert ranked.schema.field("scores").type == pa.list_(pa.float64())
    for row in ranked.to_pylist():
        assert len(row["scores"]) == len(row["completions"])
        assert all(x in (1.0, 2.0, 3.0, 4.0, 5.0) for x in row["scores"])
    assert validate_table(ranked, "ranked").error_count == 0
    pairs = read_output(result.output("save"))
    p = step_summary(result, "pairs")
    assert p["out"] + sum(p["dropped"].values()) == 3 + 3 + 1  # every pair of completions accounted for
    assert validate_table(pairs, "preference").error_count == 0


def test_judge_score_messages_averages_seeded_samples(tiny_models, data, tmp_path):
    def rate(folder: Path):
        recipe = judge_recipe(folder, tiny_models, data["sft"],
                              {"id": "rate", "uses": "judge_score",
                               "with": {"model": "policy", "mode": "messages", "samples": 2, "temperature": 1.0}},
                              {"id": "save", "uses": "write"})
        return run(recipe)

    result = rate(tmp_path / "a")
    table = read_output(result.output())
    s = step_summary(result, "rate")
    assert (s["in"], s["out"], s["failed"]) == (4, 3, 1) and s["metrics"]["requests"] == 3
    ratings = table.column("rating").to_pylist()
    assert all(1.0 <= r <= 10.0 and (2 * r).is_integer() for r in ratings)  # the mean of two integer ratings
    failed = failed_rows(result, "rate")
    assert failed.column("id").to_pylist() == ["s3"] and failed.column("_error").to_pylist() == ["no reply to rate"]
    again = read_output(rate(tmp_path / "b").output())
    assert again.column("rating").to_pylist() == ratings  # seeds per row and completion: the same samples
    check_counts(result)


def test_judge_score_reasons_and_cut_off_answers(tiny_models, data, tmp_path):
    recipe = judge_recipe(tmp_path / "a", tiny_models, data["preference"],
                          {"id": "rate", "uses": "judge_score",
                           "with": {"model": "policy", "mode": "response", "response_column": "chosen",
                                    "reason": True, "reason_chars": 12, "max_tokens": 96,
                                    "samples": 2, "temperature": 1.0}},
                          {"id": "save", "uses": "write"})
    result = run(recipe)
    table = read_output(result.output())
    s = step_summary(result, "rate")
    assert (s["out"], s["failed"]) == (5, 0)
    assert all(1.0 <= r <= 10.0 for r in table.column("rating").to_pylist())
    assert all(isinstance(r, str) and len(r) <= 12 for r in table.column("judge_reason").to_pylist())

    # Too few tokens for any answer: every row fails with the judge's raw text, none gets a made-up rating.
    recipe = judge_recipe(tmp_path / "b", tiny_models, data["preference"],
                          {"id": "rate", "uses": "judge_score",
                           "with": {"model": "policy", "mode": "response", "response_column": "chosen",
                                    "reason": True, "max_tokens": 3}},
                          {"id": "save", "uses": "write"})
    result = run(recipe)
    s = step_summary(result, "rate")
    assert (s["in"], s["out"], s["failed"]) == (5, 0, 5)
    errors = failed_rows(result, "rate").column("_error").to_pylist()
    assert all(e.startswith("judge answer cut off at max_tokens (completion 0): ") for e in errors)
    check_counts(result)


# ---------------------------------------------------------------------------------------------------------------
# judge_preference


def test_judge_preference_asks_both_orders(tiny_models, data, tmp_path, monkeypatch):
    calls = GenerateCalls(monkeypatch, tiny_models.policy)
    recipe = judge_recipe(tmp_path, tiny_models, data["preference"],
                          # Sampled answers (seeded per pair and order), so the random model is not always
                          # consistent or always inconsistent.
                          {"id": "judge", "uses": "judge_preference", "with": {"model": "policy", "temperature": 1.0}},
                          {"id": "save", "uses": "write"})
    result = run(recipe)
    s = step_summary(result, "judge")
    m = s["metrics"]
    assert m["pairs"] == 4 and m["consistent"] + m["inconsistent"] == 4
    assert sum(calls.calls) == m["requests"] == 8  # every pair asked twice; the identical one not at all
    assert s["dropped"] == {k: v for k, v in {"identical": 1, "inconsistent": m["inconsistent"]}.items() if v}
    assert s["out"] == m["consistent"] and s["failed"] == 0
    table = read_output(result.output())
    assert "score_chosen" not in table.column_names
    swapped = 0
    for row in table.to_pylist():
        assert row["judge_consistent"] is True and row["judge_verdict"] in ("kept", "swapped")
        # A consistent verdict names the same reply in both orders: A then B, or B then A.
        assert row["judge_answers"] == (["A", "B"] if row["judge_verdict"] == "kept" else ["B", "A"])
        original = next(r for r in PREFERENCE if r["prompt"] == row["prompt"])
        expected = (original["chosen"], original["rejected"])
        if row["judge_verdict"] == "swapped":
            expected = expected[::-1]
            swapped += 1
        assert (row["chosen"], row["rejected"]) == expected
        assert row["id"] == content_id("preference", row["prompt"], row["chosen"], row["rejected"])
    assert m["swapped"] == swapped
    assert table.num_rows == 0 or validate_table(table, "preference").error_count == 0
    check_counts(result)


def test_judge_preference_ranked_pairs_with_ties(tiny_models, data, tmp_path, monkeypatch):
    calls = GenerateCalls(monkeypatch, tiny_models.policy)
    recipe = judge_recipe(tmp_path / "a", tiny_models, data["ranked"],
                          {"id": "judge", "uses": "judge_preference",
                           "with": {"model": "policy", "mode": "ranked", "ties": True, "inconsistent": "tie",
                                    "keep_ties": True}},
                          {"id": "save", "uses": "write", "with": {"schema": "preference"}})
    result = run(recipe)
    s = step_summary(result, "judge")
    m = s["metrics"]
    # 3 + 3 + 1 pairs of completions; r1's two copies of "Blue." give one identical and one duplicate pair.
    assert s["dropped"] == {"identical": 1, "duplicate": 1}
    assert m["pairs"] == s["out"] == 5 and m["consistent"] + m["inconsistent"] == 5
    assert sum(calls.calls) == m["requests"] == 10
    table = read_output(result.output())
    verdicts = table.column("judge_verdict").to_pylist()
    assert set(verdicts) <= {"kept", "swapped", "tie"} and verdicts.count("tie") == m["ties"]
    assert all(set(a) <= {"A", "B", "tie"} and len(a) == 2 for a in table.column("judge_answers").to_pylist())
    assert validate_table(table, "preference").error_count == 0

    # Without swapping each pair is asked once and consistency is unknown.
    calls.calls.clear()
    recipe = judge_recipe(tmp_path / "b", tiny_models, data["ranked"],
                          {"id": "judge", "uses": "judge_preference",
                           "with": {"model": "policy", "mode": "ranked", "swap": False}},
                          {"id": "save", "uses": "write", "with": {"schema": "preference"}})
    result = run(recipe)
    m = step_summary(result, "judge")["metrics"]
    assert sum(calls.calls) == m["requests"] == m["pairs"] == 5
    assert (m["consistent"], m["inconsistent"]) == (0, 0)
    table = read_output(result.output())
    assert table.num_rows == 5 and set(table.column("judge_consistent").to_pylist()) == {None}


def test_judge_steps_on_the_transformers_engine(tiny_models, data, tmp_path):
    # The same steps on plain transformers: choices are scored, JSON answers masked by a grammar.
    spec = {"path": str(tiny_models.llama3), "engine": "transformers", "dtype": "float32", "max_model_len": 1024}
    recipe = write_recipe(tmp_path / "hf.yaml", [
        {"id": "load", "uses": "read", "with": {"path": str(data["preference"])}},
        {"id": "judge", "uses": "judge_preference", "with": {"model": "hf", "ties": True}},
        {"id": "verdicts", "uses": "write"},
        {"id": "rate", "uses": "judge_score", "input": "load",
         "with": {"model": "hf", "mode": "response", "response_column": "chosen", "scale": 5}},
        {"id": "save", "uses": "write"},
    ], name="hf", output=str(tmp_path / "run"), models={"hf": spec}, shard_rows=2)
    result = run(recipe)
    s = step_summary(result, "judge")
    m = s["metrics"]
    assert m["pairs"] == 4 and m["consistent"] + m["inconsistent"] == 4 and m["requests"] == 8
    assert s["out"] == m["consistent"] - m["ties"]  # inconsistent pairs and ties dropped
    ratings = read_output(result.output("save")).column("rating").to_pylist()
    assert len(ratings) == 5 and all(r in (1.0, 2.0, 3.0, 4.0, 5.0) for r in ratings)


def test_judge_steps_name_missing_columns(tiny_models, data, tmp_path):
    recipe = judge_recipe(tmp_path, tiny_models, data["sft"],
                          {"id": "judge", "uses": "judge_preference", "with": {"model": "policy"}},
                          {"id": "save", "uses": "write"})
    with pytest.raises(RecipeError, match="column 'prompt' is not in the data") as info:
        run(recipe)
    assert info.value.field == "steps.judge.with.mode"


@pytest.mark.parametrize(("uses", "params", "key", "message"), [
    ("judge_score", {"scale": 1}, "scale", "scale must be between 2 and 100"),
    ("judge_score", {"samples": 3}, "samples", "needs temperature above 0"),
    ("judge_score", {"mode": "pairs"}, "mode", "ranked"),
    ("judge_score", {"rubric": " "}, "rubric", "rubric is blank"),
    ("judge_preference", {"swap": False, "inconsistent": "tie"}, "inconsistent", "needs swap: true"),
    ("judge_preference", {"max_tokens": 0}, "max_tokens", "at least 1"),
])
def test_bad_params_are_refused_before_any_model_loads(tmp_path, uses, params, key, message):
    recipe = write_recipe(tmp_path / "bad.yaml", [
        {"id": "load", "uses": "read", "with": {"path": str(tmp_path / "none.parquet")}},
        {"id": "judge", "uses": uses, "with": {"model": "judge", **params}},
        {"id": "save", "uses": "write"},
    ], name="bad", output=str(tmp_path / "run"), models={"judge": {"path": str(tmp_path / "no-model")}})
    with pytest.raises(RecipeError, match=message) as info:
        run(recipe)
    assert info.value.field == f"steps.judge.with.{key}"
