"""Cheap format checks on chat text: cut-off lead-ins, broken code fences, leaked template tokens and the like."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING


from datakit.curate.filters.base import Rules, TextFilter, TextParams
from datakit.pipeline.params import param
from datakit.pipeline.registry import register

if TYPE_CHECKING:
    import polars as pl

# Special tokens of common chat templates: ChatML/Llama-3/Phi `<|...|>`, DeepSeek `<｜...｜>`,
# Llama-2 `[INST]`/`<<SYS>>`, Gemma `<start_of_turn>`/`<end_of_turn>`.
TEMPLATE_TOKENS = r"<\|[A-Za-z0-9_]{1,40}\|>|<｜[^｜\n]{1,40}｜>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>"
# A line opening a new turn: "User:", "Human:", "Assistant:", or Alpaca's "### Instruction:" / "### Response:".
ROLE_LINE = r"(?mi)^[^\S\n]*(?:#{1,4}[^\S\n]*)?(?:user|human|assistant|instruction|response)[^\S\n]*:"
CONTROL = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"  # C0 controls and DEL, less tab, newline and carriage return


@register("format_filter")
class FormatFilter(TextFilter):
    """Drop texts with format defects that make poor SFT targets; each check is a parameter and a reason.

    Rules and reasons, in order (param name = reason, except max_newlines -> too_many_newlines):
    - `only_punctuation`: no letter or digit in any script (only whitespace, punctuation, symbols).
    - `trailing_colon`: ends with ':' (or '：'), usually a lead-in whose content was cut off
      (Magpie's "300K-Filtered" rule, Xu et al. 2024).
    - `too_many_newlines` (`max_newlines`, off by default): more newlines than this; Magpie's
      Llama-3.1 MT card uses 4 on instructions.
    - `unbalanced_fences`: an odd number of ``` (or ~~~) fence lines, i.e. a code block left open.
    - `template_tokens`: chat-template special tokens leaked into the text (<|im_end|>, [INST], ...).
    - `role_leak`: a line opening a new turn ("User:", "Human:", "### Instruction:" ...), as when a
      model writes the next turn itself. Turn it off for data that legitimately contains scripts.
    - `replacement_char`: U+FFFD, the trace of text decoded with the wrong encoding.
    - `control_chars`: control characters other than tab, newline and carriage return.
    """

    @dataclass(frozen=True)
    class Params(TextParams):
        only_punctuation: bool = param(True, help="drop texts without any letter or digit")
        trailing_colon: bool = param(True, help="drop texts ending with ':' (cut-off lead-ins)")
        max_newlines: int | None = param(None, help="drop texts with more newlines than this (too_many_newlines)")
        unbalanced_fences: bool = param(True, help="drop texts with an odd number of ``` or ~~~ fence lines")
        template_tokens: bool = param(True, help="drop texts containing chat-template special tokens")
        role_leak: bool = param(True, help="drop texts with a line starting a new turn (User:, Human: ...)")
        replacement_char: bool = param(True, help="drop texts containing U+FFFD (broken decoding)")
        control_chars: bool = param(True, help="drop texts containing control characters (not tab/newline)")

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.max_newlines is not None and self.max_newlines < 0:
                raise ValueError(f"max_newlines must be 0 or more (or null to disable), got {self.max_newlines}")

    def check(self, text: pl.Series, rules: Rules) -> None:
        p = self.params
        if p.only_punctuation:
            rules.apply("only_punctuation", text.str.contains(r"[\p{L}\p{N}]"))
        if p.trailing_colon:
            rules.apply("trailing_colon", ~text.str.contains(r"[:：]\s*$"))
        if p.max_newlines is not None:
            rules.apply("too_many_newlines", text.str.count_matches("\n", literal=True) <= p.max_newlines)
        if p.unbalanced_fences:
            backticks = text.str.count_matches(r"(?m)^[^\S\n]*```")
            tildes = text.str.count_matches(r"(?m)^[^\S\n]*~~~")
            rules.apply("unbalanced_fences", (backticks % 2 == 0) & (tildes % 2 == 0))
        if p.template_tokens:
            rules.apply("template_tokens", ~text.str.contains(TEMPLATE_TOKENS))
        if p.role_leak:
            rules.apply("role_leak", ~text.str.contains(ROLE_LINE))
        if p.replacement_char:
            rules.apply("replacement_char", ~text.str.contains("\ufffd", literal=True))
        if p.control_chars:
            rules.apply("control_chars", ~text.str.contains(CONTROL))
