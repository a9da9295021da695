"""Pairing ranked responses into preference data: best vs worst, every pair, or best vs a seeded random other.

A strategy looks at one row's completions and scores and names the (chosen, rejected) index pairs it
keeps, counting every pair it leaves out by reason: `tie` (score gap not above `min_margin`),
`identical` (same text on both sides), `duplicate` (a pair of texts this row already gave) and
`too_few_completions`. Chosen never equals rejected, and the chosen score is always the higher one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.generate.rows import content_id, seed_columns, with_columns
from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import MapResult, MapStep
from datakit.pipeline.steps._arrow import require_columns

Strategy = Literal["best_worst", "all_pairs", "best_random"]
# (pairs as (chosen, rejected) indices, dropped counts by reason)
Picked = tuple[list[tuple[int, int]], dict[str, int]]


def best_and_worst(scores: Sequence[float]) -> tuple[int, int]:
    """Indices of the highest and the lowest score; among equal scores the earliest wins (deterministic)."""
    values = np.asarray(scores, dtype=np.float64)
    return int(np.argmax(values)), int(np.argmin(values))


def text_codes(options: Sequence[Any]) -> np.ndarray:
    """One integer per completion, equal exactly when the completions are equal (text or conversation)."""
    codes: dict[str, int] = {}
    # Values of one Arrow column come back with the same types and key order, so equal reprs mean equal values.
    return np.asarray([codes.setdefault(repr(o), len(codes)) for o in options], dtype=np.int64)


def pick_best_worst(options: Sequence[Any], scores: np.ndarray, margin: float, seed: int) -> Picked:
    """The best against the worst completion (Magpie-DPO, Xu et al. 2024): one pair per row at most."""
    best, worst = best_and_worst(scores)
    if scores[best] - scores[worst] <= margin:
        return [], {"tie": 1}
    if options[best] == options[worst]:
        return [], {"identical": 1}
    return [(best, worst)], {}


@functools.lru_cache(maxsize=64)
def _pairs_of(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every index pair (i, j) with i < j, in position order."""
    return np.triu_indices(n, 1)


def pick_all_pairs(options: Sequence[Any], scores: np.ndarray, margin: float, seed: int) -> Picked:
    """Every pair of completions whose gap is above `margin`, higher score chosen; drops are counted per pair.

    Pairs come in position order (0-1, 0-2, ..., 1-2, ...). A pair of texts that an earlier pair of the
    same row already gave (the same completion sampled twice) is dropped as `duplicate`.
    """
    n = len(scores)
    if n < 2:
        return [], {"too_few_completions": 1}
    first, second = _pairs_of(n)
    higher = scores[first] >= scores[second]
    chosen = np.where(higher, first, second)
    rejected = np.where(higher, second, first)
    codes = text_codes(options)
    tie = np.abs(scores[first] - scores[second]) <= margin
    identical = ~tie & (codes[chosen] == codes[rejected])
    pairs: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    duplicates = 0
    for c, r in zip(chosen[~tie & ~identical].tolist(), rejected[~tie & ~identical].tolist()):
        key = (int(codes[c]), int(codes[r]))
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        pairs.append((c, r))
    counts = {"tie": int(tie.sum()), "identical": int(identical.sum()), "duplicate": duplicates}
    return pairs, {k: v for k, v in counts.items() if v}


def pick_best_random(options: Sequence[Any], scores: np.ndarray, margin: float, seed: int) -> Picked:
    """The best completion against one drawn at random (seeded per row) from those scoring more than `margin` less.

    Completions with the best one's text are not drawn; a row left without a candidate is dropped as `tie`
    (nothing scores low enough) or `identical` (only copies of the best do).
    """
    best = int(np.argmax(scores))
    lower = np.flatnonzero(scores[best] - scores > margin)
    if lower.size == 0:
        return [], {"tie": 1}
    codes = text_codes(options)
    lower = lower[codes[lower] != codes[best]]
    if lower.size == 0:
        return [], {"identical": 1}
    rng = np.random.default_rng(seed)
    return [(best, int(lower[rng.integers(lower.size)]))], {}


def score_lists(scores: pa.Array, completions: pa.Array) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """All scores as one float array with per-row offsets, and the rows whose scores cannot be paired, with why."""
    scores = pc.cast(scores, pa.list_(pa.float64()))
    offsets = scores.offsets.to_numpy()
    flat = scores.values.to_numpy(zero_copy_only=False)  # nulls become NaN
    lengths = np.diff(offsets)
    sizes = pc.fill_null(pc.list_value_length(completions), 0).to_numpy(zero_copy_only=False)
    unusable = scores.is_null().to_numpy(zero_copy_only=False) | (lengths != sizes) | (sizes == 0)
    not_finite = np.concatenate([[0], np.cumsum(~np.isfinite(flat))])
    missing = not_finite[offsets[1:]] > not_finite[offsets[:-1]]
    bad = {i: "completions and scores differ in length" for i in np.flatnonzero(unusable).tolist()}
    for i in np.flatnonzero(missing & ~unusable).tolist():
        bad[i] = "a score is missing or not a finite number"
    return flat, offsets, bad


def preference_table(batch: pa.RecordBatch, rows: Sequence[int], chosen: Sequence[Any], rejected: Sequence[Any],
                     reply_type: pa.DataType, extra: Mapping[str, pa.Array], drop: Sequence[str]) -> pa.Table:
    """Preference rows from `batch`: row `rows[k]` (repeats allowed) with `chosen[k]` and `rejected[k]` set.

    The id is a content hash of (prompt, chosen, rejected); `extra` columns are set and `drop` columns removed.
    """
    table = pa.Table.from_batches([batch]).take(pa.array(rows, pa.int64()))
    prompts = table.column("prompt").to_pylist()
    ids = [content_id("preference", p, c, r) for p, c, r in zip(prompts, chosen, rejected)]
    table = table.drop_columns([c for c in drop if c in table.column_names])
    return with_columns(table, {
        "id": pa.array(ids, pa.string()),
        "chosen": pa.array(chosen, reply_type),
        "rejected": pa.array(rejected, reply_type),
        **extra,
    })


STRATEGIES: dict[str, Callable[[Sequence[Any], np.ndarray, float, int], Picked]] = {
    "best_worst": pick_best_worst,
    "all_pairs": pick_all_pairs,
    "best_random": pick_best_random,
}


@register("pair")
class Pair(MapStep):
    """Turn `ranked` rows (prompt, completions, scores) into `preference` rows (prompt, chosen, rejected).

    Strategies:
    - `best_worst` (default): the best-scored completion against the worst (Magpie-DPO). One pair per row.
    - `all_pairs`: every pair whose score gap is above `min_margin`, the higher one chosen (as InstructGPT's
      reward-model comparisons are drawn from rankings, Ouyang et al. 2022); a row may give many pairs, and
      drops are counted per pair.
    - `best_random`: the best against a random completion scoring more than `min_margin` less (the
      UltraFeedback-binarized recipe of Zephyr, Tunstall et al. 2023). The draw is seeded per row from the
      run seed and the row's content, so a re-run or a resumed run draws the same pairs.

    Unlike the references, pairs whose scores differ by no more than `min_margin` are dropped as `tie`,
    and pairs whose texts are equal as `identical`, so chosen never equals rejected. Ids are content
    hashes of (prompt, chosen, rejected). `score_chosen` and `score_rejected` are kept for later filtering.
    """

    pure = True
    uses_seed = True  # best_random draws from per-row seeds

    @dataclass(frozen=True)
    class Params:
        strategy: Strategy = param("best_worst", help="best_worst: best vs worst; all_pairs: every pair above the "
                                                      "margin; best_random: best vs a seeded random lower one")
        min_margin: float = param(0.0, help="drop pairs whose score gap is not above this (0: only exact ties)")

        def __post_init__(self) -> None:
            if not self.min_margin >= 0:
                raise ValueError(f"min_margin must be 0 or more, got {self.min_margin}")

    def process(self, batch: pa.RecordBatch) -> MapResult:
        require_columns(batch, ["prompt", "completions", "scores"], self.context.step_id, "strategy")
        completions = batch.column("completions").to_pylist()
        flat, offsets, bad = score_lists(batch.column("scores"), batch.column("completions"))
        seeds = (self.row_seeds(batch, seed_columns(batch, "prompt", "completions", "scores"))
                 if self.params.strategy == "best_random" else np.zeros(batch.num_rows, np.uint64))
        pick = STRATEGIES[self.params.strategy]
        rows, chosen, rejected, high, low = [], [], [], [], []
        dropped: dict[str, int] = {}
        failed = [(int(i), reason) for i, reason in bad.items()]
        usable = np.ones(batch.num_rows, dtype=bool)
        usable[list(bad)] = False
        for i in np.flatnonzero(usable).tolist():
            options, values = completions[i], flat[offsets[i]:offsets[i + 1]]
            pairs, reasons = pick(options, values, self.params.min_margin, int(seeds[i]))
            for reason, count in reasons.items():
                dropped[reason] = dropped.get(reason, 0) + count
            for c, r in pairs:
                rows.append(i)
                chosen.append(options[c])
                rejected.append(options[r])
                high.append(float(values[c]))
                low.append(float(values[r]))
        table = preference_table(batch, rows, chosen, rejected, batch.schema.field("completions").type.value_type,
                                 {"score_chosen": pa.array(high, pa.float64()),
                                  "score_rejected": pa.array(low, pa.float64())},
                                 drop=("completions", "scores"))
        return MapResult(table, failed=sorted(failed), dropped=dropped)
