"""Phrase lists: model refusals and disclaimers, web boilerplate, and phrases of the user's own."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING


from datakit.curate.filters.base import Rules, TextFilter, TextParams
from datakit.pipeline.params import param
from datakit.pipeline.registry import register

if TYPE_CHECKING:
    import polars as pl

# Lower case with straight apostrophes; texts are brought to the same form before matching.
REFUSALS = (
    "as an ai language model",
    "as a language model, i",
    "as an ai developed by",
    "as an ai, i don't",
    "as an ai, i do not",
    "as an ai, i cannot",
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "i'm sorry, i can't",
    "i apologize, but i cannot",
    "i apologize, but i can't",
    "my apologies, but i cannot",
    "i can't assist with that",
    "i cannot assist with that",
    "i can't help with that",
    "i cannot help with that",
    "i'm unable to help with",
    "i am unable to help with",
    "i'm unable to assist",
    "i am unable to assist",
    "i apologize, but i am unable",
    "i'm not able to help with",
    "i cannot fulfill",
    "i can't fulfill",
    "i cannot comply",
    "i must decline",
    "i don't have personal opinions",
    "i do not have personal opinions",
    "i don't have the ability to browse",
    "against my programming",
    "violates openai's content policy",
)
BOILERPLATE = (
    "lorem ipsum",
    "click here",
    "this website uses cookies",
    "we use cookies to",
    "accept all cookies",
    "by continuing to use this site",
    "by using this website, you agree",
    "all rights reserved",
    "subscribe to our newsletter",
    "sign up for our newsletter",
    "please enable javascript",
    "javascript is disabled",
    "skip to main content",
    "share this article",
    "read our privacy policy",
    "terms of service apply",
)
_APOSTROPHES = r"[\u2019\u2018\u02bc\u2032`]"  # ’ ‘ ʼ ′ ` all read as '


def normalize(text: pl.Series) -> pl.Series:
    """Lower case, with every apostrophe variant written as '."""
    return text.str.replace_all(_APOSTROPHES, "'").str.to_lowercase()


def pattern(phrases: list[str] | tuple[str, ...]) -> str:
    """One regex matching any of `phrases` in normalized text, their words separated by any whitespace."""
    import polars as pl

    plain = normalize(pl.Series(list(phrases), dtype=pl.String)).to_list()
    return "|".join(r"\s+".join(re.escape(word) for word in phrase.split()) for phrase in plain)


@register("phrase_filter")
class PhraseFilter(TextFilter):
    """Drop texts containing a listed phrase: case-insensitive, any apostrophe (' ’ ‘ ʼ), any whitespace.

    Reasons, in order: `refusal` (a model refusing or disclaiming itself: "as an AI language model",
    "I'm sorry, but I can't", ...; see REFUSALS), `boilerplate` (web leftovers: lorem ipsum,
    "click here", cookie and newsletter notices, ...; see BOILERPLATE), `phrase` (`extra_phrases`).
    The lists are datakit's own, kept short and specific so that ordinary answers do not match.
    Each list is one regex over the lower-cased text (one pass per list, no per-row Python).
    """

    @dataclass(frozen=True)
    class Params(TextParams):
        refusals: bool = param(True, help="drop refusals and AI disclaimers (reason: refusal)")
        boilerplate: bool = param(True, help="drop web boilerplate such as lorem ipsum or cookie notices "
                                             "(reason: boilerplate)")
        extra_phrases: list[str] = param(default_factory=list, help="more phrases to drop on (reason: phrase)")

        def __post_init__(self) -> None:
            super().__post_init__()
            blank = [i for i, phrase in enumerate(self.extra_phrases) if not phrase.strip()]
            if blank:
                raise ValueError(f"extra_phrases must not contain blank phrases (item {blank[0]} is blank)")

    @functools.cached_property
    def patterns(self) -> list[tuple[str, str]]:
        """The enabled phrase lists in rule order, each with its reason, as one regex per list."""
        p = self.params
        lists = (("refusal", p.refusals, REFUSALS), ("boilerplate", p.boilerplate, BOILERPLATE),
                 ("phrase", bool(p.extra_phrases), p.extra_phrases))
        return [(reason, pattern(phrases)) for reason, enabled, phrases in lists if enabled]

    def check(self, text: pl.Series, rules: Rules) -> None:
        if not self.patterns:
            return
        plain = normalize(text)
        for reason, regex in self.patterns:
            rules.apply(reason, ~plain.str.contains(regex))
