"""Gopher's repetition rules: repeated lines, paragraphs and word n-grams, each threshold its own drop reason.

Defaults are the thresholds of Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
from Training Gopher", Appendix A (table of repetition filters for MassiveWeb): a text is removed when

    repeated lines / lines                          > 0.30    repeated paragraphs / paragraphs      > 0.30
    characters in repeated lines / characters       > 0.20    the same for paragraphs               > 0.20
    characters in the most frequent 2-gram          > 0.20    3-gram > 0.18, 4-gram > 0.16
    characters in repeated 5-grams                  > 0.15    6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10

How the statistics are measured here:
- Lines are the non-blank lines, paragraphs the blocks separated by blank lines, both stripped of
  surrounding whitespace; a line is "repeated" when the same line occurred earlier in the text
  (the first occurrence is not counted). A line or paragraph without a letter or digit ("{", "},",
  "```", "---") is structure, not content, and never counts as a repeat: JSON, code and tables are
  full of them. Character fractions are over the characters of all lines (or paragraphs).
- Words are the lower-cased runs of non-whitespace; n-gram character fractions are over the
  characters of all words. The most frequent n-gram counts only when it occurs at least twice
  (a short answer whose n-grams are all distinct is not repetitive); ties go to the longer n-gram,
  and its occurrences (overlapping ones included) times its characters is capped at 1. For
  repeated 5..10-grams, a word counts once however many repeated n-grams cover it.

All statistics are computed for the whole batch at once with polars and numpy (no per-row Python).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from datakit.curate.filters.base import Rules, TextFilter, TextParams, check_fraction, share
from datakit.pipeline.params import param
from datakit.pipeline.registry import register

if TYPE_CHECKING:
    import polars as pl

TOP_NGRAMS = (2, 3, 4)
DUPLICATE_NGRAMS = (5, 6, 7, 8, 9, 10)
# Drop reasons in the order of Gopher's table; each has the threshold parameter `max_<reason>`.
REASONS = ("dup_lines", "dup_paragraphs", "dup_line_chars", "dup_paragraph_chars",
           *(f"top_{n}gram" for n in TOP_NGRAMS), *(f"dup_{n}gram" for n in DUPLICATE_NGRAMS))
_LINE = r"[^\n]*\S[^\n]*"
_PARAGRAPH = r"(?s)\S.*?(?:\n\s*\n|\z)"  # up to and including the next blank line, or the end


def piece_repetition(text: pl.Series, paragraphs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per text: the fraction of lines (or paragraphs) repeating an earlier one, and of characters in those."""
    import polars as pl

    frame = pl.DataFrame({"text": text}).with_row_index("row")
    pieces = (frame.select("row", piece=pl.col("text").str.extract_all(_PARAGRAPH if paragraphs else _LINE))
              .explode("piece").drop_nulls("piece")
              .with_columns(pl.col("piece").str.strip_chars()))
    content = pl.col("piece").str.contains(r"[\p{L}\p{N}]")
    per_row = (pieces.with_columns(repeat=~pl.struct("row", "piece").is_first_distinct() & content,
                                   chars=pl.col("piece").str.len_chars())
               .group_by("row")
               .agg(n=pl.len(), repeats=pl.col("repeat").sum(), chars=pl.col("chars").sum(),
                    repeat_chars=pl.col("chars").filter(pl.col("repeat")).sum()))
    rows = per_row["row"].to_numpy()
    repeated, repeated_chars = np.zeros(len(text)), np.zeros(len(text))
    repeated[rows] = share(per_row["repeats"], per_row["n"])
    repeated_chars[rows] = share(per_row["repeat_chars"], per_row["chars"])
    return repeated, repeated_chars


def ngram_repetition(text: pl.Series, top: tuple[int, ...] = TOP_NGRAMS,
                     duplicated: tuple[int, ...] = DUPLICATE_NGRAMS) -> dict[str, np.ndarray]:
    """Per text, for each n in `top`: the character share of the most frequent word n-gram (`top_{n}gram`);
    for each n in `duplicated`: the character share of words inside a repeated n-gram (`dup_{n}gram`).

    Only n-grams occurring twice or more matter, and an n-gram can only repeat where its first n-1
    words repeat, so each n looks only at the positions whose (n-1)-gram repeated: little work on
    ordinary text, however many sizes are asked for.
    """
    import polars as pl

    rows = len(text)
    words = (pl.DataFrame({"text": text}).with_row_index("row")
             .select("row", word=pl.col("text").str.to_lowercase().str.extract_all(r"\S+"))
             .explode("word").drop_nulls("word"))
    row = words["row"].to_numpy().astype(np.int64)
    size = words["word"].str.len_chars().to_numpy().astype(np.float64)
    total = np.bincount(row, weights=size, minlength=rows)
    ends = np.concatenate([[0.0], np.cumsum(size)])  # characters of words i..j-1: ends[j] - ends[i]
    # Ids of (row, word) pairs: an n-gram built from them is distinct per row, so counts are per row.
    # A private category set (freed with the batch; the global one would grow with every word ever seen).
    word = words["word"].cast(pl.Categorical(pl.Categories.random())).to_physical().to_numpy().astype(np.int64)
    word_id = _compact(word * rows + row)
    base = int(word_id.max(initial=0)) + 1
    start, gram = np.arange(len(row)), word_id  # candidate n-gram starts, and their (n-1)-gram ids
    out: dict[str, np.ndarray] = {}
    for n in range(2, max((*top, *duplicated), default=1) + 1):
        fits = start + n - 1 < len(row)
        start, gram = start[fits], gram[fits]
        inside = row[start + n - 1] == row[start]  # n-grams running into the next row do not count
        start, gram = start[inside], _compact(gram[inside] * base + word_id[start[inside] + n - 1])
        count = np.bincount(gram)[gram] if len(gram) else gram
        repeated = count > 1
        if n in top:
            chars = count[repeated] * (ends[start[repeated] + n] - ends[start[repeated]])
            out[f"top_{n}gram"] = np.minimum(share(_most_frequent(row[start[repeated]], count[repeated], chars,
                                                                   rows), total), 1.0)
        if n in duplicated:
            covered = np.zeros(len(row), dtype=bool)
            for k in range(n):  # a repeated n-gram starting at i covers words i .. i+n-1
                covered[start[repeated] + k] = True
            out[f"dup_{n}gram"] = share(np.bincount(row, weights=size * covered, minlength=rows), total)
        start, gram = start[repeated], gram[repeated]
    return out


def _most_frequent(row: np.ndarray, count: np.ndarray, chars: np.ndarray, rows: int) -> np.ndarray:
    """Per row: the characters (occurrences x length) of its most frequent n-gram, ties going to the longest."""
    import polars as pl

    frame = pl.DataFrame({"row": row, "count": count, "chars": chars})
    best = (frame.filter(pl.col("count") == pl.col("count").max().over("row"))
            .group_by("row").agg(pl.col("chars").max()))
    out = np.zeros(rows)
    out[best["row"].to_numpy()] = best["chars"].to_numpy()
    return out


def _compact(keys: np.ndarray) -> np.ndarray:
    """Renumber `keys` as 0, 1, 2 ... (equal keys, equal numbers) so products of ids stay small."""
    return np.unique(keys, return_inverse=True)[1].reshape(-1)


@register("repetition_filter")
class RepetitionFilter(TextFilter):
    """Drop repetitive texts by Gopher's rules (Rae et al. 2021, Appendix A); a null threshold disables a rule.

    Rules and reasons, in order: dup_lines, dup_paragraphs, dup_line_chars, dup_paragraph_chars,
    top_2gram, top_3gram, top_4gram, dup_5gram .. dup_10gram. A text is dropped when its statistic is
    above the threshold. See the module docstring for how each statistic is measured.
    """

    @dataclass(frozen=True)
    class Params(TextParams):
        max_dup_lines: float | None = param(0.30, help="max share of lines repeating an earlier line (Gopher: 0.30)")
        max_dup_paragraphs: float | None = param(0.30, help="max share of repeated paragraphs (Gopher: 0.30)")
        max_dup_line_chars: float | None = param(0.20, help="max share of characters in repeated lines (Gopher: 0.20)")
        max_dup_paragraph_chars: float | None = param(0.20, help="max share of characters in repeated paragraphs "
                                                                 "(Gopher: 0.20)")
        max_top_2gram: float | None = param(0.20, help="max character share of the most frequent 2-gram (Gopher: 0.20)")
        max_top_3gram: float | None = param(0.18, help="max character share of the most frequent 3-gram (Gopher: 0.18)")
        max_top_4gram: float | None = param(0.16, help="max character share of the most frequent 4-gram (Gopher: 0.16)")
        max_dup_5gram: float | None = param(0.15, help="max character share of words in repeated 5-grams "
                                                       "(Gopher: 0.15)")
        max_dup_6gram: float | None = param(0.14, help="the same for 6-grams (Gopher: 0.14)")
        max_dup_7gram: float | None = param(0.13, help="the same for 7-grams (Gopher: 0.13)")
        max_dup_8gram: float | None = param(0.12, help="the same for 8-grams (Gopher: 0.12)")
        max_dup_9gram: float | None = param(0.11, help="the same for 9-grams (Gopher: 0.11)")
        max_dup_10gram: float | None = param(0.10, help="the same for 10-grams (Gopher: 0.10)")

        def __post_init__(self) -> None:
            super().__post_init__()
            check_fraction(self, *(f"max_{reason}" for reason in REASONS))

    def check(self, text: pl.Series, rules: Rules) -> None:
        limits = {reason: getattr(self.params, f"max_{reason}") for reason in REASONS}
        limits = {reason: limit for reason, limit in limits.items() if limit is not None}
        stats: dict[str, np.ndarray] = {}
        if limits.keys() & {"dup_lines", "dup_line_chars"}:
            stats["dup_lines"], stats["dup_line_chars"] = piece_repetition(text)
        if limits.keys() & {"dup_paragraphs", "dup_paragraph_chars"}:
            stats["dup_paragraphs"], stats["dup_paragraph_chars"] = piece_repetition(text, paragraphs=True)
        top = tuple(n for n in TOP_NGRAMS if f"top_{n}gram" in limits)
        duplicated = tuple(n for n in DUPLICATE_NGRAMS if f"dup_{n}gram" in limits)
        if top or duplicated:
            stats |= ngram_repetition(text, top, duplicated)
        for reason, limit in limits.items():
            rules.apply(reason, stats[reason] <= limit)
