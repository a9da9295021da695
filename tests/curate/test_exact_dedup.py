"""Exact dedup on normalized text: which texts count as one key, nested text (chat messages), and the default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.errors import RecipeError
from datakit.pipeline import run
from datakit.pipeline.steps.dedup import normalize_text
from tests.pipeline.conftest import read_output, write_recipe

TEXTS = [
    "Hello, World!",  # 0
    "hello world",  # 1: case and punctuation
    "  HELLO \t\n world ",  # 2: whitespace runs and ends
    "\uff28\uff45\uff4c\uff4c\uff4f\u3000world",  # 3: full-width letters and an ideographic space (NFKC)
    "Hello... World?!",  # 4
    "Hello Wörld",  # 5: a different letter stays different
    "Hello, World!",  # 6: exact repeat
    "hello-world",  # 7: removing the hyphen joins the words: "helloworld", not "hello world"
    "helloworld",  # 8
    None,  # 9
    None,  # 10
]


def run_dedup(tmp_path: Path, rows: list[dict[str, Any]], shard_rows: int = 3, **params: Any):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    recipe = write_recipe(tmp_path / "r.yaml", [
        {"id": "load", "uses": "read", "with": {"path": str(data)}},
        {"id": "dedup", "uses": "dedup", "with": params},
        {"id": "save", "uses": "write"},
    ], name="d", output=str(tmp_path / "run"), shard_rows=shard_rows)
    result = run(recipe)
    return read_output(result.output()), next(s for s in result.summary["steps"] if s["id"] == "dedup")


def test_normalized_text_keys():
    out = pl.select(normalize_text(pl.lit(pl.Series(TEXTS)))).to_series().to_list()
    assert out == ["hello world"] * 5 + ["hello wörld", "hello world", "helloworld", "helloworld", None, None]


def test_text_normalization_merges_variants_across_shards(tmp_path):
    rows = [{"id": i, "text": t} for i, t in enumerate(TEXTS)]
    out, step = run_dedup(tmp_path / "text", rows, columns=["text"], normalize="text")
    assert out.column("id").to_pylist() == [0, 5, 7, 9]
    assert out.column("text").to_pylist() == ["Hello, World!", "Hello Wörld", "hello-world", None]  # as written
    assert step["dropped"] == {"duplicate": 7}
    plain, step = run_dedup(tmp_path / "none", rows, columns=["text"])  # the default compares exact values
    assert plain.column("id").to_pylist() == [0, 1, 2, 3, 4, 5, 7, 8, 9]
    assert step["dropped"] == {"duplicate": 2}


def test_other_key_columns_are_compared_as_they_are(tmp_path):
    rows = [{"id": i, "text": t, "lang": lang} for i, (t, lang) in
            enumerate([("Hi!", "en"), ("hi", "en"), ("HI", "fr"), ("Hi", "fr")])]
    out, _ = run_dedup(tmp_path, rows, normalize="text")  # default key: every column but id
    assert out.column("id").to_pylist() == [0, 2]


def test_chat_messages_are_normalized_inside(tmp_path):
    def chat(user: str, assistant: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]

    rows = [{"id": 0, "messages": chat("What is 2+2?", "It is 4.")},
            {"id": 1, "messages": chat("what is 2+2", "it is  4")},  # "+" is a symbol, not punctuation: kept
            {"id": 2, "messages": chat("What is 2+2?", "It is four.")},
            {"id": 3, "messages": [{"role": "assistant", "content": "What is 2+2?"},
                                   {"role": "user", "content": "It is 4."}]},
            {"id": 4, "messages": []}, {"id": 5, "messages": []}]
    out, step = run_dedup(tmp_path, rows, shard_rows=2, columns=["messages"], normalize="text")
    assert out.column("id").to_pylist() == [0, 2, 3, 4]  # roles are part of the key
    assert out.column("messages").to_pylist()[0] == rows[0]["messages"]
    assert step["dropped"] == {"duplicate": 2}


def test_unknown_normalization_is_refused(tmp_path):
    with pytest.raises(RecipeError, match="expected one of 'none', 'text'") as info:
        run_dedup(tmp_path, [{"id": 0, "text": "a"}], normalize="nfkc")
    assert info.value.field == "steps.dedup.with.normalize"
