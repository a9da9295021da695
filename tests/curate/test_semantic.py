"""Semantic dedup end to end with the real all-MiniLM-L6-v2: planted paraphrase groups, keep rules, labels,
clustered vs exact comparison, re-sharding, parameter and column errors, and resume reusing the index.

The planted set was designed from the model's own cosine similarities: within the four groups below every
pair is at or above 0.906 (most above 0.93), the pancake pair sits at 0.858, and no other pair reaches 0.67.
So at threshold 0.9 exactly the four groups are duplicates, and at 0.8 the pancake pair joins them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from datakit.errors import RecipeError, StepError
from datakit.pipeline import run
from tests.conftest import write_jsonl
from tests.pipeline.conftest import read_output, write_recipe

ROWS = [  # (id, text) in dataset order; duplicates are spread so they cross 2-row shards
    ("fr_caps", "WHAT IS THE CAPITAL OF FRANCE?!"),
    ("rev", "How do I reverse a list in Python?"),
    ("fruit", "List three fruits that are red."),
    ("rev_lower", "how do i reverse a list in python"),
    ("ocean", "Write a short poem about the ocean."),
    ("sky", "Explain why the sky is blue."),
    ("fr", "What is the capital of France?"),
    ("spanish", "Translate good morning into Spanish."),
    ("pancakes", "Give me a recipe for pancakes."),
    ("mult", "What is 12 times 12?"),
    ("sea", "Write a short poem about the sea."),
    ("leaves", "Why do leaves change color in autumn?"),
    ("rev_can", "How can I reverse a list in Python?"),
    ("hamlet", "Summarize the plot of Hamlet."),
    ("sky_bang", "Explain why the sky is blue!!"),
    ("dict", "How do I sort a dictionary by value in Python?"),
    ("germany", "What is the capital of Germany?"),
    ("fr_city", "What's the capital city of France?"),
    ("mountains", "Write a short poem about the mountains."),
    ("salty", "Explain why the ocean is salty."),
    ("pancake_recipe", "Give me a pancake recipe."),
    ("waffles", "Give me a recipe for waffles."),
]
IDS = [i for i, _ in ROWS]
GROUPS = [["fr_caps", "fr", "fr_city"], ["rev", "rev_lower", "rev_can"], ["ocean", "sea"], ["sky", "sky_bang"]]
PANCAKES = ["pancakes", "pancake_recipe"]
SCORES = {"rev_can": 0.9, "rev": 0.1, "fr_caps": None, "fr": 0.5, "fr_city": 0.2, "ocean": 0.3, "sea": 0.3,
          "sky_bang": 2.0}


@pytest.fixture(scope="module")
def minilm() -> Path:
    pytest.importorskip("sentence_transformers")
    testing = pytest.importorskip("datakit.testing")
    return testing.minilm_path()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [{"id": i, "text": t, "score": SCORES.get(i, 0.0)} for i, t in ROWS]
    return write_jsonl(tmp_path_factory.mktemp("semantic") / "rows.jsonl", rows)


def dedup_run(directory: Path, data: Path, minilm: Path, shard_rows: int = 2, resume: bool = False,
              **params: Any) -> tuple[pa.Table, dict[str, Any]]:
    """Run read -> semantic_dedup -> write; the output table and the dedup step's summary."""
    directory.mkdir(parents=True, exist_ok=True)
    recipe = write_recipe(directory / "sem.yaml", [
        {"id": "load", "uses": "read", "with": {"path": str(data)}},
        {"id": "sem", "uses": "semantic_dedup",
         "with": {"model": "minilm", "column": "text", "device": "cpu", **params}},
        {"id": "save", "uses": "write"},
    ], name="sem", seed=3, shard_rows=shard_rows, output=str(directory / "run"),
        models={"minilm": {"path": str(minilm), "device": "cpu", "batch_size": 64}})
    result = run(recipe, resume=resume)
    step = next(s for s in result.summary["steps"] if s["id"] == "sem")
    return read_output(result.output()), step


def dropped_ids(table: pa.Table) -> set[str]:
    return set(IDS) - set(table.column("id").to_pylist())


def expected_drops(groups: list[list[str]], kept: list[str]) -> set[str]:
    return {i for g in groups for i in g} - set(kept)


def test_planted_paraphrases_are_dropped_keeping_the_earliest(tmp_path, data, minilm):
    out, step = dedup_run(tmp_path, data, minilm, threshold=0.9)
    assert out.column("id").to_pylist() == [i for i in IDS if i not in {"fr", "fr_city", "rev_lower", "rev_can",
                                                                       "sea", "sky_bang"}]
    assert out.column_names == ["id", "text", "score"]
    assert step["dropped"] == {"semantic_duplicate": 6} and (step["in"], step["out"]) == (22, 16)
    metrics = step["metrics"]
    assert (metrics["embedded"], metrics["duplicate_groups"], metrics["clusters"]) == (22, 4, 1)  # 22 rows: exact
    assert metrics["embed_seconds"] > 0 and metrics["finalize_seconds"] > 0


def test_lower_threshold_joins_the_looser_paraphrase(tmp_path, data, minilm):
    out, step = dedup_run(tmp_path, data, minilm, threshold=0.8)
    assert dropped_ids(out) == expected_drops(GROUPS + [PANCAKES], ["fr_caps", "rev", "ocean", "sky", "pancakes"])
    assert step["metrics"]["duplicate_groups"] == 5


def test_clusters_and_sharding_do_not_change_the_result(tmp_path, data, minilm):
    exact, _ = dedup_run(tmp_path / "exact", data, minilm, threshold=0.9, clusters=1)
    clustered, step = dedup_run(tmp_path / "clustered", data, minilm, threshold=0.9, clusters=4)
    one_shard, _ = dedup_run(tmp_path / "one", data, minilm, shard_rows=100, threshold=0.9, clusters=1)
    random_init, _ = dedup_run(tmp_path / "random", data, minilm, threshold=0.9, clusters=3, init="random", seed=5)
    assert step["metrics"]["clusters"] == 4 and step["metrics"]["duplicate_groups"] == 4
    assert clustered.equals(exact) and one_shard.equals(exact) and random_init.equals(exact)
    assert len(dropped_ids(exact)) == 6


def test_small_tiles_and_pair_compaction_give_the_same_groups(tmp_path, data, minilm, monkeypatch):
    import datakit.curate.semantic as semantic

    monkeypatch.setattr(semantic, "COMPACT_PAIRS", 2)  # reduce the held pairs after nearly every tile
    out, step = dedup_run(tmp_path, data, minilm, threshold=0.9, batch_size=3, cluster_column="dup_of")
    position = {i: n for n, i in enumerate(IDS)}
    labels = dict(zip(out.column("id").to_pylist(), out.column("dup_of").to_pylist()))
    assert all(labels[i] == position[g[0]] for g in GROUPS for i in g) and step["metrics"]["duplicate_groups"] == 4


def test_threshold_one_drops_only_exact_copies(tmp_path, minilm):
    rows = [{"id": i, "text": t} for i, t in ROWS] + [{"id": f"{i}_copy", "text": t} for i, t in ROWS[:3]]
    data = write_jsonl(tmp_path / "copies.jsonl", rows)
    out, step = dedup_run(tmp_path, data, minilm, threshold=1.0)
    assert out.column("id").to_pylist() == IDS and step["dropped"] == {"semantic_duplicate": 3}


def test_keep_longest_and_best(tmp_path, data, minilm):
    longest, _ = dedup_run(tmp_path / "longest", data, minilm, threshold=0.9, keep="longest")
    assert dropped_ids(longest) == expected_drops(GROUPS, ["fr_city", "rev_can", "ocean", "sky_bang"])
    best, _ = dedup_run(tmp_path / "best", data, minilm, threshold=0.9, keep="best", score_column="score")
    # fr_caps has no score (ranks last); ocean and sea tie, so the earlier one stays.
    assert dropped_ids(best) == expected_drops(GROUPS, ["fr", "rev_can", "ocean", "sky_bang"])


def test_keep_central_and_farthest_follow_the_centroid(tmp_path, data, minilm):
    from datakit.engines import EmbedderSpec, load_embedder

    vectors = load_embedder(EmbedderSpec(path=str(minilm), device="cpu", batch_size=64)).embed([t for _, t in ROWS])
    centroid = vectors.mean(axis=0)
    closeness = dict(zip(IDS, vectors @ (centroid / np.linalg.norm(centroid))))
    central = [max(g, key=closeness.__getitem__) for g in GROUPS]
    farthest = [min(g, key=closeness.__getitem__) for g in GROUPS]
    assert central != farthest
    out, _ = dedup_run(tmp_path / "central", data, minilm, threshold=0.9, clusters=1, keep="central")
    assert dropped_ids(out) == expected_drops(GROUPS, central)
    out, _ = dedup_run(tmp_path / "farthest", data, minilm, threshold=0.9, clusters=1, keep="farthest")
    assert dropped_ids(out) == expected_drops(GROUPS, farthest)


def test_cluster_column_labels_instead_of_dropping(tmp_path, data, minilm):
    out, step = dedup_run(tmp_path, data, minilm, threshold=0.9, cluster_column="dup_of")
    assert out.column("id").to_pylist() == IDS and step["dropped"] == {}
    assert out.schema.field("dup_of").type == pa.int64()
    position = {i: n for n, i in enumerate(IDS)}
    expected = {i: n for n, i in enumerate(IDS)}
    for group in GROUPS:
        for i in group:
            expected[i] = position[group[0]]  # each group's earliest row, in dataset order
    assert dict(zip(out.column("id").to_pylist(), out.column("dup_of").to_pylist())) == expected


def test_chat_messages_embed_the_turns_of_a_role(tmp_path, minilm):
    rows = [{"id": i, "messages": [{"role": "user", "content": t}, {"role": "assistant", "content": f"Answer {n}: "
                                   + ("yes " * n)}]} for n, (i, t) in enumerate(ROWS)]
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    out, _ = dedup_run(tmp_path, data, minilm, column="messages", role="user", threshold=0.9)
    assert dropped_ids(out) == expected_drops(GROUPS, [g[0] for g in GROUPS])


def test_missing_columns_are_named(tmp_path, data, minilm):
    with pytest.raises(RecipeError, match="column 'prompt' is not in the data") as info:
        dedup_run(tmp_path / "a", data, minilm, column="prompt")
    assert info.value.field == "steps.sem.with.column"
    with pytest.raises(RecipeError, match="column 'rating' is not in the data") as info:
        dedup_run(tmp_path / "b", data, minilm, keep="best", score_column="rating")
    assert info.value.field == "steps.sem.with.score_column"


def test_resume_reuses_the_built_index_parts(tmp_path, data, minilm, monkeypatch):
    from datakit.engines.embedder import Embedder

    reference, _ = dedup_run(tmp_path / "reference", data, minilm, threshold=0.9)
    real_embed = Embedder.embed
    calls: list[int] = []

    def embed_until_power_cut(self: Embedder, texts: Any) -> np.ndarray:
        if len(calls) == 4:
            raise RuntimeError("power cut")
        calls.append(len(texts))
        return real_embed(self, texts)

    monkeypatch.setattr(Embedder, "embed", embed_until_power_cut)
    with pytest.raises(StepError, match="power cut"):
        dedup_run(tmp_path / "cut", data, minilm, threshold=0.9)
    assert calls == [2, 2, 2, 2]  # four of the eleven shards were built before the crash

    def counted_embed(self: Embedder, texts: Any) -> np.ndarray:
        calls.append(len(texts))
        return real_embed(self, texts)

    calls.clear()
    monkeypatch.setattr(Embedder, "embed", counted_embed)
    out, step = dedup_run(tmp_path / "cut", data, minilm, resume=True, threshold=0.9)
    assert len(calls) == 7 and sum(calls) == 14  # only the shards not built yet
    assert out.equals(reference) and step["metrics"]["embedded"] == 22
