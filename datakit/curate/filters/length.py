"""Length bounds on a text in characters, words and tokens, each bound its own drop reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from datakit.curate.filters.base import Rules, TextFilter, TextParams, check_bounds
from datakit.errors import RecipeError
from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import shared

if TYPE_CHECKING:
    import polars as pl


@register("length_filter")
class LengthFilter(TextFilter):
    """Keep texts whose length lies within the given bounds (inclusive); every bound is off by default.

    Characters are Unicode code points; words are runs of non-whitespace; tokens are counted by the
    Hugging Face tokenizer `tokenizer` (a local folder or Hub id, without special tokens such as BOS),
    loaded once per process. No default bounds: sensible ones depend on the data (Gopher keeps web
    documents of 50 to 100,000 words, Rae et al. 2021, while a correct chat answer may be one word).
    Rules run in the order chars, words, tokens, and tokens are only counted for rows still kept.
    """

    @dataclass(frozen=True)
    class Params(TextParams):
        min_chars: int | None = param(None, help="drop texts with fewer characters (too_short_chars)")
        max_chars: int | None = param(None, help="drop texts with more characters (too_long_chars)")
        min_words: int | None = param(None, help="drop texts with fewer whitespace-separated words (too_few_words)")
        max_words: int | None = param(None, help="drop texts with more words (too_many_words)")
        min_tokens: int | None = param(None, help="drop texts with fewer tokens (too_few_tokens); needs tokenizer")
        max_tokens: int | None = param(None, help="drop texts with more tokens (too_many_tokens); needs tokenizer")
        tokenizer: str | None = param(None, help="Hugging Face tokenizer (local folder or Hub id) to count tokens")

        def __post_init__(self) -> None:
            super().__post_init__()
            for low, high in (("min_chars", "max_chars"), ("min_words", "max_words"), ("min_tokens", "max_tokens")):
                check_bounds(self, low, high)
            if (self.min_tokens is not None or self.max_tokens is not None) and not self.tokenizer:
                raise ValueError("tokenizer is needed to count tokens for min_tokens/max_tokens: give a local "
                                 "folder or Hub id of a Hugging Face tokenizer")

    tokenizer: Any = None  # loaded by setup when token bounds are set

    def setup(self) -> None:
        p = self.params
        if p.tokenizer and (p.min_tokens is not None or p.max_tokens is not None):
            name, step_id = p.tokenizer, self.context.step_id
            self.tokenizer = shared(("tokenizer", name), lambda: _load_tokenizer(name, step_id))

    def check(self, text: pl.Series, rules: Rules) -> None:
        p = self.params
        if p.min_chars is not None or p.max_chars is not None:
            chars = text.str.len_chars()
            if p.min_chars is not None:
                rules.apply("too_short_chars", chars >= p.min_chars)
            if p.max_chars is not None:
                rules.apply("too_long_chars", chars <= p.max_chars)
        if p.min_words is not None or p.max_words is not None:
            words = text.str.count_matches(r"\S+")
            if p.min_words is not None:
                rules.apply("too_few_words", words >= p.min_words)
            if p.max_words is not None:
                rules.apply("too_many_words", words <= p.max_words)
        if p.min_tokens is not None or p.max_tokens is not None:
            tokens = self.count_tokens(text, rules.keep)
            if p.min_tokens is not None:
                rules.apply("too_few_tokens", tokens >= p.min_tokens)
            if p.max_tokens is not None:
                rules.apply("too_many_tokens", tokens <= p.max_tokens)

    def count_tokens(self, text: pl.Series, rows: np.ndarray) -> np.ndarray:
        """Token counts of the texts where `rows` is true (0 elsewhere), in one batched tokenizer call."""
        if self.tokenizer is None:
            self.setup()
        counts = np.zeros(len(text), dtype=np.int64)
        index = np.flatnonzero(rows)
        if len(index):
            encoded = self.tokenizer(text.gather(index).to_list(), add_special_tokens=False, verbose=False,
                                     return_attention_mask=False)["input_ids"]
            counts[index] = [len(ids) for ids in encoded]
        return counts


def _load_tokenizer(name: str, step_id: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # missing folder, unknown id, no network: all mean "cannot count tokens"
        raise RecipeError(f"cannot load the tokenizer {name!r} ({exc}); give a local folder or Hub id of a "
                          "Hugging Face tokenizer", field=f"steps.{step_id}.with.tokenizer") from exc
