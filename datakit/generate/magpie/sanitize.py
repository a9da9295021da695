"""Magpie's instruction sanitizer: strip labels and numbering, cut off answers, keep the question itself."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import IntFlag


class Rule(IntFlag):
    """What `sanitize` did to an instruction; the returned rule id is these flags OR-ed together (0: unchanged)."""

    PREFIX = 1  # list numbering or a label such as "Question:", "Task:", "Q1:" stripped from the start
    ANSWER = 2  # cut at an answer marker ("Answer:", "Solution:", ...) or a "## Step 1" heading
    QUESTION = 4  # no answer marker: kept up to the first question mark
    FIRST_LINE = 8  # no answer marker and no question mark: kept the first line


_LABELS = ("question", "task", "problem", "query", "instruction", "prompt", "request", "user", "q")

# One leading prefix: numbering ("1. ", "2) ", "(3) ", "a) "), a bullet, or a label with a colon, possibly inside
# markdown emphasis or after a heading mark ("**Question 1:**", "## Task:"). Applied until none is left.
_PREFIX = re.compile(
    r"\s*(?:"
    r"\d{1,3}[.)]\s+|\(\d{1,3}\)\s*|[a-z]\)\s+|[-*•]\s+"
    rf"|(?:#{{1,6}}\s*)?[*_]{{0,3}}(?:{'|'.join(_LABELS)})[ \t]*\d{{0,3}}[ \t]*[:：][*_]{{0,3}}\s*"
    r")",
    re.IGNORECASE,
)

# Where a model starts answering its own instruction. Only capitalised or upper-case markers count, standing at
# the start or after whitespace, so "give the answer: yes or no" inside a request is left alone. Markdown around
# the marker goes with it.
# "Output:" and "Hint:" are left out on purpose: instructions quote them in worked examples and hints.
_MARKERS = ("Final Answer", "Answer", "Solution", "Explanation", "Response", "Reasoning", "Proof")
_ANSWER = re.compile(
    r"(?:^|(?<=\s))[#*_>\s]*(?:"
    + "|".join(m for word in _MARKERS for m in (word, word.upper()))
    + r")[ \t]*\d{0,3}[ \t]*[:：]"
    + r"|(?:^|(?<=\s))(?:#{1,6}|\*\*)[ \t]*Step[ \t]*1\b"
)

# A question mark that ends a sentence (not one inside a URL query string), with any closing quotes or brackets.
_QUESTION_END = re.compile(r"\?[\"'”’)\]]*(?=\s|$)")


def _strip_prefixes(text: str) -> tuple[str, Rule]:
    rule = Rule(0)
    while True:
        match = _PREFIX.match(text)
        if match is None:
            return text, rule
        text = text[match.end() :]
        rule |= Rule.PREFIX


def sanitize(text: str) -> tuple[str, int]:
    """Clean one sampled instruction and say which rules fired, as a `Rule` flag value (0: unchanged).

    Models such as Gemma-2 and Llama-3.x often number or label the instruction and then answer it in the same
    turn. This strips leading numbering and labels, then cuts at the first answer marker; without one it keeps
    text up to the first question mark, or else the first line. The result may be empty (nothing but a label or
    an answer), which callers should treat as no instruction.
    """
    clean, rule = _strip_prefixes(text.strip())
    answer = _ANSWER.search(clean)
    if answer is not None:
        return clean[: answer.start()].strip(), int(rule | Rule.ANSWER)
    question = _QUESTION_END.search(clean)
    if question is not None:
        kept = clean[: question.end()]
        if clean[question.end() :].strip():
            rule |= Rule.QUESTION
        return kept, int(rule)
    first_line, newline, _ = clean.partition("\n")
    if newline:
        return first_line.strip(), int(rule | Rule.FIRST_LINE)
    return clean, int(rule)


def sanitize_many(texts: Iterable[str]) -> tuple[list[str], list[int]]:
    """`sanitize` over many instructions: the cleaned texts and their rule ids, in order."""
    cleaned: list[str] = []
    rules: list[int] = []
    for text in texts:
        clean, rule = sanitize(text)
        cleaned.append(clean)
        rules.append(rule)
    return cleaned, rules
