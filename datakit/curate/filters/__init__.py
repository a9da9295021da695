"""Heuristic text filters: length, repetition, symbols, phrases and format, each drop under a named reason.

Every filter reads its text the same way (a text column, or the turns of one role in a chat-messages
column; see `base.select_text`) and drops null or blank text under the reason `empty` before its own rules.
"""

from datakit.curate.filters import formatting, length, phrases, repetition, symbols
from datakit.curate.filters.base import Rules, TextFilter, TextParams, select_text

__all__ = ["Rules", "TextFilter", "TextParams", "formatting", "length", "phrases", "repetition", "select_text",
           "symbols"]
