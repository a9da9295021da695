"""The built-in steps, run through the real engine and checked against polars doing the same on the whole table."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.errors import DataError, InputError, RecipeError
from datakit.pipeline import run
from tests.pipeline.conftest import make_rows, read_output, write_input, write_recipe


def run_steps(tmp_path: Path, steps: list[dict], rows: int = 600, shard_rows: int = 70, seed: int = 0,
              name: str = "t", **settings) -> pa.Table:
    data = write_input(tmp_path, rows)
    steps = [{"id": "load", "uses": "read", "with": {"path": str(data)}}, *steps,
             {"id": "save", "uses": "write"}]
    recipe = write_recipe(tmp_path / f"{name}.yaml", steps, name=name, output=str(tmp_path / name),
                          shard_rows=shard_rows, seed=seed, **settings)
    result = run(recipe)
    return read_output(result.output())


def reference(rows: int = 600) -> pl.DataFrame:
    return pl.DataFrame(make_rows(rows))


def test_filter_select_rename_derive_drop(tmp_path):
    out = run_steps(tmp_path, [
        {"id": "keep", "uses": "filter", "with": {"where": "score >= 0.25 AND lang = 'en'"}},
        {"id": "cols", "uses": "select", "with": {"columns": ["id", "text", "score"]}},
        {"id": "ren", "uses": "rename", "with": {"columns": {"text": "prompt"}}},
        {"id": "more", "uses": "derive", "with": {"columns": {"n_chars": "length(prompt)", "half": "score / 2",
                                                              "tag": "'x'"}}},
        {"id": "less", "uses": "drop", "with": {"columns": ["half"]}},
    ])
    expected = (reference().filter((pl.col("score") >= 0.25) & (pl.col("lang") == "en"))
                .select("id", pl.col("text").alias("prompt"), "score")
                .with_columns(n_chars=pl.col("prompt").str.len_chars(), tag=pl.lit("x")))
    assert out.column_names == ["id", "prompt", "score", "n_chars", "tag"]
    assert out.schema.field("prompt").type == pa.string()  # polars' large strings come back plain
    assert out.column("id").to_pylist() == expected["id"].to_list()
    assert out.column("n_chars").to_pylist() == expected["n_chars"].to_list()
    assert set(out.column("tag").to_pylist()) == {"x"}


def test_filter_and_derive_may_name_a_column_twice(tmp_path):
    out = run_steps(tmp_path, [
        {"id": "keep", "uses": "filter", "with": {"where": "score < 0.2 OR score > 0.8"}},
        {"id": "more", "uses": "derive", "with": {"columns": {"spread": "score * score - score"}}},
    ])
    expected = reference().filter((pl.col("score") < 0.2) | (pl.col("score") > 0.8))
    assert out.column("id").to_pylist() == expected["id"].to_list()
    assert out.column("spread").to_pylist() == pytest.approx((expected["score"] ** 2 - expected["score"]).to_list())


def test_dedup_keeps_first_occurrence_across_shards(tmp_path):
    out = run_steps(tmp_path, [{"id": "dedup", "uses": "dedup", "with": {"columns": ["text"]}}], rows=1500)
    expected = reference(1500).unique(subset=["text"], keep="first", maintain_order=True)
    assert out.column("id").to_pylist() == expected["id"].to_list()
    assert len(out) < 1500


def test_dedup_default_key_ignores_id(tmp_path):
    out = run_steps(tmp_path, [{"id": "dedup", "uses": "dedup"}], rows=800)
    expected = reference(800).unique(subset=["text", "score", "lang"], keep="first", maintain_order=True)
    assert out.column("id").to_pylist() == expected["id"].to_list()


def test_sample_is_seeded_per_row_not_per_shard(tmp_path):
    steps = [{"id": "pick", "uses": "sample", "with": {"fraction": 0.3}}]
    a = run_steps(tmp_path / "a", steps, rows=2000, shard_rows=70, seed=1)
    b = run_steps(tmp_path / "b", steps, rows=2000, shard_rows=500, seed=1)
    c = run_steps(tmp_path / "c", steps, rows=2000, shard_rows=70, seed=2)
    assert a.column("id").to_pylist() == b.column("id").to_pylist()  # the shard size does not matter
    assert a.column("id").to_pylist() != c.column("id").to_pylist()  # the seed does
    assert 0.25 < len(a) / 2000 < 0.35


def test_shuffle_is_a_seeded_permutation(tmp_path):
    steps = [{"id": "mix", "uses": "shuffle"}]
    a = run_steps(tmp_path / "a", steps, rows=700, seed=5)
    b = run_steps(tmp_path / "b", steps, rows=700, seed=5)
    c = run_steps(tmp_path / "c", steps, rows=700, seed=6)
    ids = a.column("id").to_pylist()
    assert sorted(ids) == list(range(700)) and ids != list(range(700))
    assert ids == b.column("id").to_pylist() and ids != c.column("id").to_pylist()
    # Rows move across shards: the first output shard draws from all over the input.
    assert max(ids[:70]) > 350


def test_limit_takes_the_first_rows_in_order(tmp_path):
    out = run_steps(tmp_path, [{"id": "keep", "uses": "filter", "with": {"where": "lang = 'en'"}},
                               {"id": "top", "uses": "limit", "with": {"rows": 150}}])
    expected = reference().filter(pl.col("lang") == "en").head(150)
    assert out.column("id").to_pylist() == expected["id"].to_list()


def test_write_jsonl_and_schema_check(tmp_path):
    data = write_input(tmp_path, 50)
    steps = [{"id": "load", "uses": "read", "with": {"path": str(data)}},
             {"id": "pc", "uses": "derive", "with": {"columns": {"prompt": "text", "completion": "upper(text)"}}},
             {"id": "cols", "uses": "select", "with": {"columns": ["prompt", "completion"]}},
             {"id": "save", "uses": "write", "with": {"format": "jsonl", "schema": "prompt_completion",
                                                      "path": str(tmp_path / "published")}}]
    recipe = write_recipe(tmp_path / "r.yaml", steps, output=str(tmp_path / "run"), shard_rows=20)
    result = run(recipe)
    files = sorted((tmp_path / "published").iterdir())
    assert [f.name for f in files] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(lines) == 50 and set(lines[0]) == {"prompt", "completion"}
    assert result.summary["outputs"]["save"]["rows"] == 50

    # Rows that break the schema: nothing is published, and the old dataset stays.
    bad = write_recipe(tmp_path / "bad.yaml", [*steps[:2], {"id": "cols", "uses": "select",
                                                            "with": {"columns": ["prompt"]}}, steps[3]],
                       output=str(tmp_path / "run2"), shard_rows=20)
    with pytest.raises(DataError) as info:
        run(bad)
    assert "do not satisfy schema 'prompt_completion'" in str(info.value) and "completion" in str(info.value)
    assert sorted((tmp_path / "published").iterdir()) == files


def test_read_several_paths_and_columns(tmp_path):
    a = write_input(tmp_path, 30, seed=1, name="a.jsonl")
    b = write_input(tmp_path, 20, seed=2, name="b.jsonl")
    steps = [{"id": "load", "uses": "read", "with": {"path": [str(a), str(b)], "columns": ["id", "text"]}},
             {"id": "save", "uses": "write"}]
    result = run(write_recipe(tmp_path / "r.yaml", steps, output=str(tmp_path / "run"), shard_rows=8))
    out = read_output(result.output())
    assert out.column_names == ["id", "text"] and out.column("id").to_pylist() == list(range(30)) + list(range(20))


def test_runtime_errors_name_the_problem(tmp_path):
    with pytest.raises(RecipeError) as info:
        run_steps(tmp_path / "a", [{"id": "keep", "uses": "filter", "with": {"where": "nope > 1"}}])
    assert info.value.field == "steps.keep.with.where" and "column 'nope' is not in the data" in str(info.value)
    with pytest.raises(InputError) as info2:
        recipe = write_recipe(tmp_path / "r.yaml", [{"id": "load", "uses": "read", "with": {"path": "missing.jsonl"}},
                                                    {"id": "save", "uses": "write"}], output=str(tmp_path / "r"))
        run(recipe)
    assert "missing.jsonl" in str(info2.value)


def test_empty_input_publishes_an_empty_dataset(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"id": 1, "text": "a", "score": 0.1, "lang": "en"}) + "\n")
    steps = [{"id": "load", "uses": "read", "with": {"path": str(data)}},
             {"id": "none", "uses": "filter", "with": {"where": "score > 5"}},
             {"id": "save", "uses": "write"}]
    result = run(write_recipe(tmp_path / "r.yaml", steps, output=str(tmp_path / "run")))
    files = list(result.output().glob("*.parquet"))
    assert len(files) == 1 and pq.read_table(files[0]).num_rows == 0
    assert pq.read_schema(files[0]).names == ["id", "text", "score", "lang"]


def test_empty_objects_in_json_lines_are_stored_as_nulls(tmp_path):
    data = tmp_path / "in.jsonl"
    rows = [{"id": 1, "checks": [{"name": "a", "kwargs": {}}], "extra": {}}, {"id": 2, "checks": None, "extra": {}}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    steps = [{"id": "load", "uses": "read", "with": {"path": str(data)}}, {"id": "save", "uses": "write"}]
    result = run(write_recipe(tmp_path / "r.yaml", steps, output=str(tmp_path / "run"), shard_rows=1))
    assert read_output(result.output()).to_pylist() == [
        {"id": 1, "checks": [{"name": "a", "kwargs": None}], "extra": None}, {"id": 2, "checks": None, "extra": None}]


def test_write_with_a_schema_and_no_rows_says_so_and_publishes_nothing(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "hi"},
                                                        {"role": "assistant", "content": "yo"}]}) + "\n")
    steps = [{"id": "load", "uses": "read", "with": {"path": str(data)}},
             {"id": "none", "uses": "filter", "with": {"where": "id == 'b'"}},
             {"id": "save", "uses": "write", "with": {"schema": "sft"}}]
    with pytest.raises(InputError) as info:
        run(write_recipe(tmp_path / "r.yaml", steps, output=str(tmp_path / "run")))
    assert info.value.exit_code == 2 and info.value.field == "steps.save"
    assert "no rows reached step 'save'" in str(info.value) and "schema 'sft'" in str(info.value)
    assert not (tmp_path / "run" / "output" / "save").exists()


def test_dedup_merges_its_index_in_groups_when_it_is_large(tmp_path, monkeypatch):
    from datakit.pipeline.steps import dedup

    monkeypatch.setattr(dedup, "MERGE_BYTES", 2000)  # forces many merge groups
    out = run_steps(tmp_path, [{"id": "dedup", "uses": "dedup", "with": {"columns": ["text"]}}], rows=1500)
    offsets = list((tmp_path / "t" / "steps" / "dedup").glob("*/index/final/offsets.npy"))
    import numpy as np

    assert np.load(offsets[0]).shape[0] > 1
    expected = reference(1500).unique(subset=["text"], keep="first", maintain_order=True)
    assert out.column("id").to_pylist() == expected["id"].to_list()


def test_top_k_keeps_the_largest_values_in_order_whatever_the_sharding(tmp_path):
    expected = reference().with_row_index("pos").sort(["score", "pos"], descending=[True, False]).head(37)
    expected_ids = sorted(expected["id"].to_list())
    for shard_rows in (70, 600):
        out = run_steps(tmp_path, [{"id": "best", "uses": "top_k", "with": {"by": "score", "k": 37}}],
                        shard_rows=shard_rows, name=f"k{shard_rows}")
        assert sorted(out.column("id").to_pylist()) == expected_ids
        ids = out.column("id").to_pylist()
        assert ids == sorted(ids)  # original order kept
    low = run_steps(tmp_path, [{"id": "worst", "uses": "top_k", "with": {"by": "score", "k": 5, "descending": False}}],
                    name="low")
    assert sorted(low.column("score").to_pylist()) == sorted(reference()["score"].to_list())[:5]
    with pytest.raises(RecipeError, match="numeric column"):
        run_steps(tmp_path, [{"id": "bad", "uses": "top_k", "with": {"by": "text", "k": 5}}], name="bad")


def test_slots_numbers_rows_for_generators(tmp_path):
    recipe = write_recipe(tmp_path / "s.yaml", [{"id": "slots", "uses": "slots", "with": {"count": 250}},
                                                 {"id": "save", "uses": "write"}],
                          name="s", output=str(tmp_path / "s"), shard_rows=100)
    result = run(recipe)
    out = read_output(result.output())
    assert out.column("slot").to_pylist() == list(range(250))
    assert result.summary["steps"][0]["out"] == 250
