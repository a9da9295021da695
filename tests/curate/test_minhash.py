"""Near-duplicate dedup: signature accuracy, LSH recall on planted pairs, keep rules, sharding, resume, agreement
with datasketch, union-find clusters and parameter checks."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.curate import minhash
from datakit.curate.clusters import components, representatives
from datakit.curate.minhash import (MinHashDedup, band_hashes, matching_share, near_duplicate_clusters, optimal_bands,
                                    shingle_hashes, signatures)
from datakit.errors import RecipeError
from datakit.pipeline import run
from datakit.pipeline.params import ParamError, build_params
from tests.pipeline.conftest import read_output, write_recipe
from tests.pipeline.killing import trial

SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    words = {"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(size)}
    return sorted(words)


def document(rng: random.Random, vocab: list[str], n: int = 120) -> list[str]:
    return [rng.choice(vocab) for _ in range(n)]


def vary(words: list[str], substitutions: int, rng: random.Random) -> list[str]:
    """Replace words at positions 5 apart (each changes exactly 5 word 5-grams); the new word keeps the length."""
    slots = rng.sample(range((len(words) - 9) // 5 + 1), substitutions)
    out = list(words)
    for slot in slots:
        out[4 + 5 * slot] = "zz" + out[4 + 5 * slot][2:]
    return out


def jaccard(a: list[str], b: list[str], k: int = 5) -> float:
    sa = {tuple(a[i:i + k]) for i in range(len(a) - k + 1)}
    sb = {tuple(b[i:i + k]) for i in range(len(b) - k + 1)}
    return len(sa & sb) / len(sa | sb)


def sketch(texts: list[str], num_perm: int = 128, seed: int = 1) -> np.ndarray:
    hashes, offsets = shingle_hashes(pl.Series(texts, dtype=pl.String))
    return signatures(hashes, offsets, num_perm, seed)


# --- signatures and LSH -------------------------------------------------------------------------------------------

def test_estimated_jaccard_is_within_its_statistical_bound():
    rng = random.Random(1)
    vocab = vocabulary(rng)
    pairs, truth = [], []
    for m in range(0, 20):
        base = document(rng, vocab, 200)
        other = vary(base, m, rng)
        pairs += [" ".join(base), " ".join(other)]
        truth.append(jaccard(base, other))
    num_perm = 256
    sig = sketch(pairs, num_perm, seed=3)
    estimate = matching_share(sig[0::2], sig[1::2])
    truth = np.array(truth)
    sigma = np.sqrt(truth * (1 - truth) / num_perm)  # the estimate is a mean of num_perm Bernoulli(J) draws
    assert np.all(np.abs(estimate - truth) <= 4 * sigma + 1 / num_perm), (estimate, truth)
    assert abs(float(np.mean(estimate - truth))) < 0.02  # no bias
    assert truth.min() < 0.5 and truth.max() == 1.0 and estimate[0] == 1.0


def test_shingles_of_short_empty_and_null_documents():
    texts = pl.Series(["a b c d e f", "A, b!", "", None, " ... ", "a b", "f e d c b a"], dtype=pl.String)
    hashes, offsets = shingle_hashes(texts, "word", 5)
    assert np.diff(offsets).tolist() == [2, 1, 0, 0, 0, 1, 2]
    assert hashes[offsets[1]] == hashes[offsets[5]]  # lowercased, punctuation trimmed: one shingle "a b"
    assert set(hashes[0:2].tolist()).isdisjoint(hashes[offsets[6]:offsets[7]].tolist())  # order matters
    assert hashes.max() < 2**32
    chars, char_offsets = shingle_hashes(pl.Series(["abcdefghij", "ABC \n DEF", "ab"]), "char", 3)
    assert np.diff(char_offsets).tolist() == [8, 5, 1]  # "abc def" has 7 characters
    sig = signatures(hashes, offsets, 16, 1)
    assert (sig[2:5] == minhash.EMPTY).all() and (sig[[0, 1, 5, 6]] != minhash.EMPTY).any(axis=1).all()


def test_signatures_do_not_depend_on_chunking(monkeypatch):
    rng = random.Random(2)
    vocab = vocabulary(rng)
    texts = [" ".join(document(rng, vocab, rng.randint(0, 60))) for _ in range(40)]
    whole = sketch(texts)
    monkeypatch.setattr(minhash, "CHUNK_SHINGLES", 7)  # many chunks, documents wider than a chunk
    assert np.array_equal(sketch(texts), whole)
    assert np.array_equal(np.concatenate([sketch([t]) for t in texts]), whole)


def test_lsh_finds_the_planted_pairs_and_nothing_else():
    rng = random.Random(3)
    vocab = vocabulary(rng)
    docs = [document(rng, vocab) for _ in range(300)]
    planted = []
    for i in range(0, 60, 2):  # J 0.92 to the original (duplicates) or 0.40 (not)
        planted.append((i, len(docs), i % 4 == 0))
        docs.append(vary(docs[i], 1 if i % 4 == 0 else 10, rng))
    sig = sketch([" ".join(d) for d in docs])
    bands, rows = optimal_bands(0.8, 128, 0.1, 0.9)
    found = near_duplicate_clusters(iter(band_hashes(sig, bands, rows)), np.ones(len(docs), bool),
                                    lambda d: sig[d], 0.8)
    pairs = set(zip(found.left[found.verified].tolist(), found.right[found.verified].tolist()))
    assert pairs == {(a, b) for a, b, dup in planted if dup}
    assert len(found.left) >= len(pairs)
    assert (found.sizes == 2).sum() == 2 * len(pairs)
    unverified = near_duplicate_clusters(iter(band_hashes(sig, bands, rows)), np.ones(len(docs), bool),
                                         lambda d: sig[d], 0.8, verify=False)
    assert unverified.verified.all() and len(unverified.left) == len(found.left)


def test_character_shingles_find_the_planted_pairs():
    rng = random.Random(9)
    vocab = vocabulary(rng)
    docs = [document(rng, vocab) for _ in range(100)]
    docs += [vary(docs[i], 1, rng) for i in range(20)]  # two characters change: character 9-gram J about 0.98
    hashes, offsets = shingle_hashes(pl.Series([" ".join(d) for d in docs]), "char", 9)
    sig = signatures(hashes, offsets)
    found = near_duplicate_clusters(iter(band_hashes(sig, 14, 9)), np.ones(len(docs), bool), lambda d: sig[d], 0.8)
    assert set(zip(found.left[found.verified].tolist(), found.right[found.verified].tolist())) == {
        (i, 100 + i) for i in range(20)}


def test_layout_from_threshold_minimizes_weighted_error():
    assert optimal_bands(0.8, 128) == (9, 13)
    assert optimal_bands(0.8, 128, 0.1, 0.9) == (14, 9)  # false negatives weigh more: more bands, shorter
    midpoints = []
    for threshold in (0.5, 0.7, 0.9):
        b, r = optimal_bands(threshold, 128)
        assert b * r <= 128
        midpoints.append((1 / b) ** (1 / r))  # where the S-curve is steepest
    assert midpoints == sorted(midpoints) and abs(midpoints[1] - 0.7) < 0.1
    with pytest.raises(ValueError, match="threshold"):
        optimal_bands(1.5, 128)


def test_same_pairs_as_datasketch():
    """Both systems verify LSH candidates on estimated Jaccard, but with different hash functions, so they can
    only disagree where an estimate can land on either side of the threshold. With 128 permutations the
    estimate's standard deviation is at most 0.03 for J >= 0.9 and 0.043 for J <= 0.6; pairs at J >= 0.9 or
    <= 0.6 are over 3.7 deviations from 0.8, so there both must agree (and be right); between, a few may differ."""
    from datasketch import MinHash, MinHashLSH

    rng = random.Random(4)
    vocab = vocabulary(rng)
    docs = [document(rng, vocab, 200) for _ in range(200)]
    levels = {}
    for i in range(0, 100):
        m = (1, 2, 3, 7, 10)[i % 5]  # J about 0.95, 0.90, 0.86, 0.70, 0.59
        levels[(i, len(docs))] = jaccard(docs[i], vary(docs[i], m, random.Random(i)))
        docs.append(vary(docs[i], m, random.Random(i)))
    texts = [" ".join(d) for d in docs]
    bands, rows = optimal_bands(0.8, 128, 0.1, 0.9)
    sig = sketch(texts)
    found = near_duplicate_clusters(iter(band_hashes(sig, bands, rows)), np.ones(len(docs), bool),
                                    lambda d: sig[d], 0.8)
    ours = set(zip(found.left[found.verified].tolist(), found.right[found.verified].tolist()))

    sketches = list(MinHash.generator(([" ".join(d[k:k + 5]).encode() for k in range(len(d) - 4)] for d in docs),
                                      num_perm=128, seed=1))
    lsh = MinHashLSH(num_perm=128, params=(bands, rows))
    for i, s in enumerate(sketches):
        lsh.insert(i, s)
    theirs = {(i, j) for i, s in enumerate(sketches) for j in lsh.query(s)
              if j > i and s.jaccard(sketches[j]) >= 0.8}

    clear = {pair for pair, j in levels.items() if j >= 0.9 or j <= 0.6}
    expected = {pair for pair in clear if levels[pair] >= 0.9}
    assert ours & clear == theirs & clear == expected
    assert len(expected) == 40
    assert ours - set(levels) == theirs - set(levels) == set()  # no pair outside the planted ones
    assert len(ours ^ theirs) <= 4


# --- word tokens and their hashes ---------------------------------------------------------------------------------

ASCII_PIECES = ["a", "B", "z", "Q9", "don't", "e.g.", "--", "...", "(x)", "\"hi\",", "_", "\x1b", "\x00", "\x7f",
                " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "~", "abcdefghijklmnopq", "ABCDEFGHIJKLMNOP"]


def word_hashes(texts: list[str | None]) -> tuple[list[list[int]], np.ndarray]:
    hashes, counts = minhash._token_hashes(pl.Series(texts, dtype=pl.String), "word")
    cuts = np.cumsum(counts)[:-1]
    return [h.tolist() for h in np.split(hashes, cuts)], counts


def reference_hash(token: bytes) -> int:
    """byte_hashes' definition, one token at a time in Python integers."""
    k, mask = int(minhash._K), 2**64 - 1
    padded = token + bytes(-len(token) % 16)
    acc = minhash._TOKEN_SEED
    for i in range(0, len(padded), 8):
        acc = (acc * k + int.from_bytes(padded[i:i + 8], "little")) & mask
    acc = (acc * k + len(token)) & mask
    return int(minhash.mix64(np.array([acc], dtype=np.uint64))[0])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.lists(st.sampled_from(ASCII_PIECES), max_size=12).map("".join),
                          st.text(st.characters(max_codepoint=127), max_size=20)), min_size=1, max_size=6))
def test_ascii_fast_path_gives_the_general_path_words_and_hashes(texts):
    """An all-ASCII batch takes the numpy path; adding a non-ASCII document sends it through pyarrow's kernels."""
    fast, fast_counts = word_hashes(texts)
    mixed, mixed_counts = word_hashes(texts + ["caf\u00e9 \u201cquoted\u201d"])  # non-ASCII: general path
    assert fast_counts.tolist() == mixed_counts[:-1].tolist()
    assert fast == mixed[:-1]
    for text, hashes in zip(texts, fast):
        words = [w.strip(minhash.PUNCTUATION) for w in _ascii_split(text.lower())] if text is not None else []
        assert hashes == [reference_hash(w.encode()) for w in words if w]


def _ascii_split(text: str) -> list[str]:
    """Split at the six ASCII whitespace characters only (str.split also splits at \\x1c-\\x1f)."""
    for space in "\t\n\x0b\x0c\r":
        text = text.replace(space, " ")
    return text.split(" ")


def test_a_document_hashes_the_same_in_any_batch():
    texts = ["The quick, brown fox -- jumps!", None, "", "  ...  ", "Tabs\tand\nlines\r\nend.", "x" * 40 + "."]
    alone, counts = word_hashes(texts)
    assert counts.tolist() == [5, 0, 0, 0, 4, 1]  # "--" and "..." are punctuation only
    with_unicode, _ = word_hashes(["na\u00efve \u2014 caf\u00e9"] + texts)
    assert with_unicode[1:] == alone
    sliced = pl.Series(["first doc"] + texts, dtype=pl.String)[1:]  # offsets not starting at 0
    hashes, sliced_counts = minhash._token_hashes(sliced, "word")
    assert sliced_counts.tolist() == counts.tolist()
    assert hashes.tolist() == [h for doc in alone for h in doc]
    assert alone[0][:3] == [reference_hash(b"the"), reference_hash(b"quick"), reference_hash(b"brown")]
    assert alone[5] == [reference_hash(b"x" * 40)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=70), min_size=1, max_size=12))
def test_byte_hashes_match_the_reference_definition(tokens):
    data = b"".join(tokens)
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    words = minhash._padded_words(np.frombuffer(data, dtype=np.uint8))
    hashes = minhash.byte_hashes(words, starts, lengths, block=3)  # several blocks
    assert hashes.tolist() == [reference_hash(t) for t in tokens]


# --- union-find ---------------------------------------------------------------------------------------------------

def test_components_agree_with_a_plain_union_find():
    rng = np.random.default_rng(5)
    n = 400
    left, right = rng.integers(0, n, 300), rng.integers(0, n, 300)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in zip(left.tolist(), right.tolist()):
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    assert components(n, left, right).tolist() == [find(i) for i in range(n)]
    assert components(3, np.array([], dtype=int), np.array([], dtype=int)).tolist() == [0, 1, 2]
    chain = np.arange(999)
    assert (components(1000, chain[::-1] + 1, chain[::-1]) == 0).all()
    with pytest.raises(ValueError, match="0..2"):
        components(3, np.array([0]), np.array([3]))


def test_representatives_follow_the_order_key():
    labels = np.array([0, 0, 0, 3, 3, 5])
    assert representatives(labels).tolist() == [0, 0, 0, 3, 3, 5]
    length = np.array([5, 9, 9, 1, 2, 7])
    assert representatives(labels, -length).tolist() == [1, 1, 1, 4, 4, 5]  # longest; ties: earliest
    score = np.array([0.1, 0.5, 0.9, 0.3, 0.3, 0.0])
    assert representatives(labels, (-length, -score)).tolist() == [2, 2, 2, 4, 4, 5]


# --- the step in recipes ------------------------------------------------------------------------------------------

def run_minhash(tmp_path: Path, rows: list[dict[str, Any]], name: str = "m", shard_rows: int = 50,
                **params: Any) -> tuple[pa.Table, dict[str, Any]]:
    data = tmp_path / f"{name}.parquet"
    tmp_path.mkdir(parents=True, exist_ok=True)
    if not data.exists():
        pq.write_table(pa.Table.from_pylist(rows), data)
    recipe = write_recipe(tmp_path / f"{name}.yaml", [
        {"id": "load", "uses": "read", "with": {"path": str(data)}},
        {"id": "near", "uses": "minhash_dedup", "with": params},
        {"id": "save", "uses": "write"},
    ], name=name, output=str(tmp_path / name), shard_rows=shard_rows)
    result = run(recipe)
    return read_output(result.output()), next(s for s in result.summary["steps"] if s["id"] == "near")


def planted_rows(seed: int = 6) -> tuple[list[dict[str, Any]], set[int]]:
    """60 unrelated documents; 10 with one duplicate (J 0.92), 5 with two, 5 with a J 0.40 variant; shuffled.
    Returns the rows and the ids a keep-earliest dedup drops."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    docs = [document(rng, vocab) for _ in range(60)]
    group = list(range(60))
    for i in range(20):
        for _ in range(2 if 10 <= i < 15 else 1):
            docs.append(vary(docs[i], 10 if i >= 15 else 1, rng))
            group.append(i if i < 15 else len(group))
    order = list(range(len(docs)))
    rng.shuffle(order)
    rows = [{"id": k, "text": " ".join(docs[i]), "score": float(k % 7)} for k, i in enumerate(order)]
    seen, dropped = set(), set()
    for k, i in enumerate(order):
        if group[i] in seen:
            dropped.add(k)
        seen.add(group[i])
    return rows, dropped


def test_step_drops_near_duplicates_the_same_whatever_the_shard_size(tmp_path):
    rows, dropped = planted_rows()
    small, small_step = run_minhash(tmp_path, rows, name="small", shard_rows=2)
    large, large_step = run_minhash(tmp_path, rows, name="large", shard_rows=1000)
    expected = [r["id"] for r in rows if r["id"] not in dropped]
    assert small.column("id").to_pylist() == large.column("id").to_pylist() == expected
    assert len(dropped) == 20
    assert small_step["dropped"] == large_step["dropped"] == {"near_duplicate": 20}
    assert small_step["metrics"]["clusters"] == large_step["metrics"]["clusters"] == 15
    assert small_step["metrics"] == large_step["metrics"]
    assert small_step["metrics"]["verified_pairs"] >= 20
    assert small_step["metrics"]["candidate_pairs"] >= small_step["metrics"]["verified_pairs"]
    assert small.column_names == ["id", "text", "score"]


def test_keep_rules_pick_the_expected_row(tmp_path):
    rng = random.Random(7)
    vocab = vocabulary(rng)
    base = document(rng, vocab)
    texts = [base, vary(base, 1, rng), base + ["zzextra", "zzwords", "zzhere"]]
    rows = [{"id": i, "text": " ".join(t), "score": s} for i, (t, s) in enumerate(zip(texts, [0.1, 0.9, 0.5]))]
    rows += [{"id": 3 + i, "text": " ".join(document(rng, vocab)), "score": 1.0} for i in range(4)]
    kept = {}
    for keep in ("earliest", "longest", "best"):
        params = {"keep": keep, "score_column": "score"} if keep == "best" else {"keep": keep}
        out, step = run_minhash(tmp_path / keep, rows, shard_rows=2, **params)
        kept[keep] = [i for i in out.column("id").to_pylist() if i < 3]
        assert step["dropped"] == {"near_duplicate": 2} and out.num_rows == 5
    assert kept == {"earliest": [0], "longest": [2], "best": [1]}
    rows[1]["score"] = None  # a missing score ranks last
    out, _ = run_minhash(tmp_path / "null", rows, keep="best", score_column="score")
    assert [i for i in out.column("id").to_pylist() if i < 3] == [2]


def test_cluster_column_marks_instead_of_dropping(tmp_path):
    rows, dropped = planted_rows()
    out, step = run_minhash(tmp_path, rows, shard_rows=7, cluster_column="cluster")
    assert out.num_rows == len(rows) and step["dropped"] == {}
    cluster = out.column("cluster").to_pylist()
    members = [i for i, c in enumerate(cluster) if c is not None]
    assert {c for c in cluster if c is not None} == {c for i, c in enumerate(cluster) if c == i}  # kept rows
    assert {i for i in members if cluster[i] != i} == dropped
    assert len({c for c in cluster if c is not None}) == step["metrics"]["clusters"] == 15
    assert out.schema.field("cluster").type == pa.int64()


def test_messages_column_compares_the_chosen_turns(tmp_path):
    rng = random.Random(8)
    vocab = vocabulary(rng)
    prompt = " ".join(document(rng, vocab, 60))
    rows = [{"id": i, "messages": [{"role": "user", "content": prompt},
                                   {"role": "assistant", "content": " ".join(document(rng, vocab, 60))}]}
            for i in range(3)]
    out, step = run_minhash(tmp_path / "user", rows, column="messages", role="user")
    assert out.column("id").to_pylist() == [0] and step["dropped"] == {"near_duplicate": 2}
    out, step = run_minhash(tmp_path / "all", rows, column="messages")
    assert out.column("id").to_pylist() == [0, 1, 2]


def index_files(run_dir: Path) -> dict[str, int]:
    files = [p for p in (run_dir / "steps" / "near").glob("*/index/**/*") if p.is_file()]
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in files}


def test_resume_keeps_the_index(tmp_path):
    rows, dropped = planted_rows()
    first, step = run_minhash(tmp_path, rows, shard_rows=10)
    before = index_files(tmp_path / "m")
    assert len([f for f in before if f.endswith("signatures.npy")]) == 9  # one part per shard
    assert any(f.endswith("final/representative.npy") for f in before)
    info = json.loads((tmp_path / "m" / "run.json").read_text())
    (tmp_path / "m" / "run.json").write_text(json.dumps({**info, "status": "running"}))
    recipe = tmp_path / "m.yaml"
    again = run(recipe, resume=True)
    assert index_files(tmp_path / "m") == before  # nothing rebuilt
    assert read_output(again.output()).equals(first)


def test_killed_run_resumes_with_the_same_rows(tmp_path):
    rows, _ = planted_rows()
    reference, _ = run_minhash(tmp_path / "ref", rows, shard_rows=4)
    recipe = tmp_path / "ref" / "m.yaml"
    result = trial(recipe, tmp_path / "killed", reference, [(12, 0.0)])  # killed while building index parts
    assert result.killed == [12]  # the kill hit a running process
    assert (result.lost, result.duplicated, result.identical) == (0, 0, True), result


@pytest.mark.parametrize(("params", "key", "message"), [
    ({"bands": 16}, "bands", "bands and rows go together"),
    ({"bands": 20, "rows": 8}, "bands", "bands \\* rows <= num_perm"),
    ({"threshold": 0}, "threshold", "threshold must be in"),
    ({"threshold": 1.5}, "threshold", "threshold must be in"),
    ({"num_perm": 1}, "num_perm", "num_perm must be between"),
    ({"keep": "best"}, None, "score_column is required with keep: best"),
    ({"score_column": "score"}, "score_column", "only used with keep: best"),
    ({"shingle_size": 0}, "shingle_size", "at least 1"),
    ({"shingle": "token"}, "shingle", "expected one of 'word', 'char'"),
    ({"keep": "newest"}, "keep", "expected one of"),
])
def test_bad_params_are_refused(params, key, message):
    with pytest.raises(ParamError, match=message) as info:
        build_params(MinHashDedup.Params, params)
    if key is not None:
        assert info.value.key == key


def test_missing_and_unsuitable_columns_are_named(tmp_path):
    rows = [{"id": 0, "text": "a b c", "n": 1}]
    with pytest.raises(RecipeError, match="column 'body' is not in the data") as info:
        run_minhash(tmp_path / "a", rows, column="body")
    assert info.value.field == "steps.near.with.column"
    with pytest.raises(RecipeError, match="column 'n' holds"):
        run_minhash(tmp_path / "b", rows, column="n")
    with pytest.raises(RecipeError, match="column 'rank' is not in the data"):
        run_minhash(tmp_path / "d", rows, keep="best", score_column="rank")
    with pytest.raises(RecipeError, match="score_column 'text' must be a numeric column") as info:
        run_minhash(tmp_path / "e", rows, keep="best", score_column="text")
    assert info.value.field == "steps.near.with.score_column"
