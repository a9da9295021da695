"""Symbol and punctuation heuristics: '#' and ellipses per word, non-alphanumeric share, bullet and ellipsis lines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from datakit.curate.filters.base import Rules, TextFilter, TextParams, check_fraction, share
from datakit.pipeline.params import param
from datakit.pipeline.registry import register

if TYPE_CHECKING:
    import polars as pl

# Bullet glyphs; Markdown's '-', '*' and '+' list markers are left out on purpose (see SymbolFilter).
BULLETS = "•●○◦▪▫■□‣⁃∙➢➤►▶"
_ELLIPSIS = r"(?:\.\.\.|…)"
_LINE = r"(?m)^[^\S\n]*\S"  # a non-blank line (counted once, at its first visible character)


@register("symbol_filter")
class SymbolFilter(TextFilter):
    """Drop texts dominated by symbols rather than words; each rule is a threshold (null disables it).

    Rules and reasons, in order, with their defaults:
    - `symbol_ratio`: ('#' runs + ellipses) per word above 0.1 (Gopher's "symbol-to-word ratio",
      Rae et al. 2021, Appendix A). A run such as '###' counts once, so Markdown headings are not
      counted once per level; an ellipsis is '...' or '…'. Words are runs of non-whitespace.
    - `non_alnum`: share of visible characters that are neither letters nor digits (in any script)
      above 0.6. No paper behind this one; measured on samples: prose 0-0.1, Python about 0.25,
      JavaScript and JSON about 0.4-0.45, dense C++ or display LaTeX about 0.5-0.55, ASCII-art
      tables 0.9. So 0.6 catches symbol soup without touching code and math.
    - `bullet_lines`: share of non-blank lines starting with a bullet above 0.9 (Gopher). Bullets are
      `bullets` (default: typographic glyphs such as '•'); Markdown list markers are not counted by
      default because list answers are normal in chat data, add '-*+' to follow Gopher on web text.
    - `ellipsis_lines`: share of non-blank lines ending with an ellipsis above 0.3 (Gopher).
    """

    @dataclass(frozen=True)
    class Params(TextParams):
        max_symbol_ratio: float | None = param(0.1, help="max ('#' runs + ellipses) per word (Gopher: 0.1)")
        max_non_alnum: float | None = param(0.6, help="max share of visible characters that are not letters "
                                                      "or digits")
        max_bullet_lines: float | None = param(0.9, help="max share of lines starting with a bullet (Gopher: 0.9)")
        max_ellipsis_lines: float | None = param(0.3, help="max share of lines ending with an ellipsis "
                                                           "(Gopher: 0.3)")
        bullets: str = param(BULLETS, help="characters that mark a bulleted line")

        def __post_init__(self) -> None:
            super().__post_init__()
            check_fraction(self, "max_non_alnum", "max_bullet_lines", "max_ellipsis_lines")
            if self.max_symbol_ratio is not None and self.max_symbol_ratio < 0:
                raise ValueError(f"max_symbol_ratio must be 0 or more (or null to disable), got "
                                 f"{self.max_symbol_ratio}")
            if not self.bullets:
                raise ValueError("bullets must list at least one bullet character")

    def check(self, text: pl.Series, rules: Rules) -> None:
        p = self.params
        if p.max_symbol_ratio is not None:
            symbols = text.str.count_matches(r"#+") + text.str.count_matches(_ELLIPSIS)
            rules.apply("symbol_ratio", share(symbols, text.str.count_matches(r"\S+")) <= p.max_symbol_ratio)
        if p.max_non_alnum is not None:
            other = text.str.count_matches(r"[^\p{L}\p{N}\s]")
            visible = text.str.len_chars() - text.str.count_matches(r"\s")
            rules.apply("non_alnum", share(other, visible) <= p.max_non_alnum)
        if p.max_bullet_lines is not None or p.max_ellipsis_lines is not None:
            lines = text.str.count_matches(_LINE)
        if p.max_bullet_lines is not None:
            bulleted = text.str.count_matches(rf"(?m)^[^\S\n]*[{_escape(p.bullets)}]")
            rules.apply("bullet_lines", share(bulleted, lines) <= p.max_bullet_lines)
        if p.max_ellipsis_lines is not None:
            trailing = text.str.count_matches(rf"(?m){_ELLIPSIS}[^\S\n]*$")
            rules.apply("ellipsis_lines", share(trailing, lines) <= p.max_ellipsis_lines)


def _escape(chars: str) -> str:
    """`chars` made safe inside a regex character class."""
    return "".join("\\" + c if c in "\\]^-[&~" else c for c in chars)
