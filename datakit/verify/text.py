"""Text functions for the instruction verifiers: word counts, sentence splitting and Treebank-style word tokens.

They reproduce the counts IFEval's reference checker gets from NLTK, without NLTK or its downloaded models:

- `count_words`: runs of word characters (`\\w+`).
- `sentence_spans` / `count_sentences`: the decision procedure of Punkt (Kiss & Strunk, 2006), the unsupervised
  splitter NLTK uses for English. A period, `?` or `!` followed by whitespace or closing punctuation is a
  candidate; the word before it and the token after it decide. `?` and `!` always end a sentence; a period ends
  one unless the word is a known abbreviation, or an initial (`J.`) or a number (`3.`) followed by a lowercase
  word or by punctuation; a known abbreviation still ends a sentence before a capitalized frequent sentence
  starter (`Inc. The`). Closing quotes and brackets after a boundary stay with the sentence they close.
  Punkt's trained English model also remembers, for some 20,000 words, whether it saw them in lowercase or
  capitalized mid-sentence. That table is not carried here (its license is unclear); only the small lists are
  (abbreviations, frequent sentence starters, number collocations), and a capitalized word is assumed to start a
  sentence after an initial but not after an abbreviation or `...`. Counts differ from NLTK's only where the
  model's vocabulary decides (`U.S. Either`, `A. Overview`, `space... Finally`).
- `word_tokens` / `count_upper_words`: the Penn Treebank conventions of NLTK's `word_tokenize` (quotes,
  punctuation, brackets, dashes and contractions split off, per sentence), for counting all-capital words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# The `regex` engine, not `re`: NLTK matches with it, and its `\w` and `\s` differ from `re`'s on some scripts
# (combining marks are word characters), which changes word counts in Hindi or Tamil.
import regex

# --- words -------------------------------------------------------------------------------------------------------

_WORD = regex.compile(r"\w+")
# On ASCII text the word characters are letters, digits and `_`: every other byte becomes a space and the runs left
# are counted by `bytes.split` (the same count as the regex, faster).
_ASCII_NON_WORD_TO_SPACE = bytes(
    code if chr(code).isascii() and (chr(code).isalnum() or chr(code) == "_") else 0x20 for code in range(256)
)


def count_words(text: str) -> int:
    """The number of runs of word characters (IFEval's word count)."""
    if text.isascii():
        return len(text.encode("ascii").translate(_ASCII_NON_WORD_TO_SPACE).split())
    return len(_WORD.findall(text))


# --- sentences (Punkt decision procedure) ------------------------------------------------------------------------

_QUOTES = "\u2018\u2019\u201c\u201d\xab\xbb"  # curly quotes and guillemets count as closing punctuation
_NON_WORD = rf"[)\";}}\]*:@'({{\[?!{_QUOTES}]"  # characters that cannot be inside a word
_MULTI_CHAR = r"(?:-{2,}|\.{2,}|(?:\.\s){2,}\.)"  # dashes and ellipses
_TOKEN = regex.compile(
    rf"{_MULTI_CHAR}"
    rf"|(?=[^(\"`{{\[:;&#*@)}}\]\-,])\S+?"  # a word: not starting with these, ending at one of ...
    rf"(?=\s|$|{_NON_WORD}|{_MULTI_CHAR}|,(?=$|\s|{_NON_WORD}|{_MULTI_CHAR}))"  # ... (comma: only word-final)
    r"|\S"
)
_CANDIDATE = regex.compile(rf"[.?!](?={_NON_WORD}|\s+(\S+))")  # group 1: the next token, after whitespace
_NUMBER = regex.compile(r"-?[.,]?\d[\d,.-]*\.?")
_INITIAL = regex.compile(r"[^\W\d]\.")
_CLOSING = regex.compile(rf"[\"')\]}}{_QUOTES}]+?(?:\s+|(?=--)|$)", regex.MULTILINE)
_ASCII_SPACE = frozenset(" \t\n\r\x0b\x0c")


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Word types (lowercased, final period removed) that Punkt's English model treats as abbreviations.
ABBREVIATIONS = _word_set(
    """
    a.a a.c a.d a.g a.h a.m a.m.e a.s a.t adm ala ariz aug ave b.f b.v bros c c.i.t c.o.m.b c.v calif chg cie co
    col colo conn corp cos ct d d.c d.h d.w dec dr e e.f e.h e.l e.m f f.g f.j feb fla fri ft g g.d g.f g.k ga gen h
    h.c h.f h.m i.m.s ill inc j.b j.c j.j j.k j.p j.r jan jr k kan ky l l.a l.f l.p lt ltd m m.b.a m.d.c m.j maj
    messrs mg mich minn mr mrs ms n n.c n.d n.h n.j n.m n.v n.y nev nov oct ok okla ore p p.a.m p.m pa ph.d prof r
    r.a r.h r.i r.j r.k r.t rep reps s s.a s.a.y s.c s.g s.p.a s.s sen sep sept sr st sw t t.j tenn tues u.k u.n u.s
    u.s.a u.s.s.r v va vs vt w w.c w.r w.va w.w wash wed wis yr
    """
) | {". . "}  # the spaced ellipsis ". . ." less its final period
# Words that often begin a sentence: after an abbreviation, a capitalized one of these starts a new sentence.
SENTENCE_STARTERS = _word_set(
    """
    according although among both but despite even he however i if in indeed instead it many meanwhile moreover
    most nevertheless nonetheless nor sales separately similarly since so some the there these they this though
    thus under when while yet
    """
)
# After a number with a period ("2. Review"), these words continue the sentence.
_NUMBER_COLLOCATIONS = _word_set(
    "abreast business commodities corrections credit dividend financing insider international leisure letters "
    "notable review who"
)
_LOWERCASE_ABBREVIATIONS = frozenset({"a.m.", "p.m.", "vs.", "mg."})  # abbreviations written in lowercase
_PUNCTUATION_TOKENS = frozenset(";:,.!?")
_END_MARKS = frozenset(".?!")
_NONE, _BREAK, _ABBREVIATION, _ELLIPSIS = range(4)


def _first_pass(token: str) -> int:
    """What a token is by itself: a sentence break, an abbreviation, an ellipsis, or none of these."""
    if token in _END_MARKS:
        return _BREAK
    if len(token) > 1 and not token.strip("."):
        return _ELLIPSIS
    if token[-1] == "." and not token.endswith(".."):
        base = token[:-1].lower()
        if base in ABBREVIATIONS or base.rsplit("-", 1)[-1] in ABBREVIATIONS:
            return _ABBREVIATION
        return _BREAK
    return _NONE


def _word_type(token: str) -> str:
    """Punkt's case-folded type of a token: numbers collapse to one type."""
    low = token.lower()
    return "##number##" if _NUMBER.fullmatch(low) else low


def _breaks_before(token: str, kind: int, following: str, following_kind: int) -> bool:
    """Whether a sentence ends after `token`, given the token that follows it (Punkt's second pass)."""
    if token[-1] != ".":
        return kind == _BREAK
    word_type = _word_type(token)
    if len(word_type) > 1 and word_type[-1] == ".":
        word_type = word_type[:-1]
    next_type = _word_type(following)
    if following_kind == _BREAK and len(next_type) > 1 and next_type[-1] == ".":
        next_type = next_type[:-1]
    if word_type == "##number##" and next_type in _NUMBER_COLLOCATIONS:
        return False
    initial = _INITIAL.fullmatch(token) is not None
    # Orthographic evidence that the next token does not start a sentence: punctuation or a lowercase word.
    continues = following in _PUNCTUATION_TOKENS or following[0].islower()
    if kind in (_ABBREVIATION, _ELLIPSIS) and not initial and following[0].isupper() and next_type in SENTENCE_STARTERS:
        return True
    if (initial or word_type == "##number##") and continues:
        return False
    # Another abbreviation after an initial ("J. K. Rowling"): the model never saw those in lowercase, so it
    # reads the initial as part of a name. Every other capitalized word we assume it has seen in lowercase.
    if initial and following[0].isupper() and next_type[-1] == "." and next_type not in _LOWERCASE_ABBREVIATIONS:
        return False
    return kind == _BREAK


# The most common contexts, decided without tokenizing: a word of two or more ASCII letters (or a number) with its
# period, then ASCII whitespace and a word of letters whose token ends there or at a character that cannot be inside
# a word (`However,`, `It's`, `Note:`), with no further end mark; or the word with its period and a glued closing
# character (`said."`). Punkt's tokens there are the word with its period, the next word and punctuation, and only
# the first pair can break.
_NON_WORD_NOR_END = rf"[)\";}}\]*:@'({{\[{_QUOTES}]"  # `_NON_WORD` less `?` and `!`
_SIMPLE_CONTEXT = re.compile(
    rf"(?:([A-Za-z]{{2,}})|(\d+))\.(?:[ \t\n\r\x0b\x0c]+([A-Za-z]+)(?:,|{_NON_WORD_NOR_END}[^.?!]*)?|({_NON_WORD}))"
)


# A context that starts with a word of two or more ASCII letters and its period (a token of its own): unless the word
# is an abbreviation, Punkt breaks there whatever token follows (a context always ends with one).
_WORD_PERIOD = re.compile(rf"([A-Za-z]{{2,}})\.(?=[ \t\n\r\x0b\x0c]|{_NON_WORD})")


def _context_breaks(context: str) -> bool:
    """Whether a candidate context (previous word, end mark, next token) holds a sentence break before its end."""
    word = _WORD_PERIOD.match(context)
    if word is not None and word.group(1).lower() not in ABBREVIATIONS:
        return True
    simple = _SIMPLE_CONTEXT.fullmatch(context)
    if simple is not None:  # `_breaks_before` on its first two tokens, spelled out
        word, number, following, glued = simple.groups()
        if word is None:  # a number: continued by punctuation, a lowercase word or one of its collocations
            if following is None:
                return glued not in _PUNCTUATION_TOKENS
            return not (following[0].islower() or following.lower() in _NUMBER_COLLOCATIONS)
        if word.lower() not in ABBREVIATIONS:
            return True
        return following is not None and following[0].isupper() and following.lower() in SENTENCE_STARTERS
    return _context_breaks_by_tokens(context)


def _context_breaks_by_tokens(context: str) -> bool:
    """`_context_breaks` by Punkt's tokens and its second pass over each pair of them (any context)."""
    tokens = [token for line in context.split("\n") for token in _TOKEN.findall(line)]
    kinds = [_first_pass(token) for token in tokens]
    return any(_breaks_before(tokens[i], kinds[i], tokens[i + 1], kinds[i + 1]) for i in range(len(tokens) - 1))


def _candidates(text: str) -> list[tuple[regex.Match[str], int]]:
    """End marks that may close a sentence, each with where its context starts (the word before it).

    A mark glued to the previous candidate (no ASCII whitespace between, as in `!!!`) replaces it.
    """
    found: list[tuple[regex.Match[str], int]] = []
    previous: regex.Match[str] | None = None
    start = stop = 0
    spaces = [space for space in _ASCII_SPACE if space in text]
    for match in _CANDIDATE.finditer(text):
        # the last ASCII whitespace after the previous candidate and before this mark
        i = max([text.rfind(space, stop + 1, match.start()) for space in spaces], default=-1)
        word_start = i + 1 if i > stop else start
        if previous is not None and stop <= word_start:
            found.append((previous, start))
        previous, start, stop = match, word_start, match.start()
    if previous is not None:
        found.append((previous, start))
    return found


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) offsets of the sentences of `text`, as NLTK's English Punkt splitter finds them."""
    cuts: list[tuple[int, int]] = []
    begin = 0
    for match, start in _candidates(text):
        after = match.end(1) if match.group(1) is not None else match.end() + 1
        # After `?` or `!` (a token of its own, with a token after it in the context) a sentence always ends.
        if match.group() != "." or _context_breaks(text[start:after]):
            cuts.append((begin, match.end()))
            begin = match.start(1) if match.group(1) is not None else match.end()
    cuts.append((begin, len(text.rstrip())))
    spans: list[tuple[int, int]] = []
    shift = 0
    for k, (start, end) in enumerate(cuts):
        start += shift
        if k + 1 < len(cuts):
            next_start, next_end = cuts[k + 1]
            closing = _CLOSING.match(text, next_start, next_end)
            if closing:  # closing quotes or brackets right after the boundary belong to this sentence
                spans.append((start, next_start + len(closing.group().rstrip())))
                shift = closing.end() - next_start
                continue
            shift = 0
        if start < end:
            spans.append((start, end))
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` (see `sentence_spans`)."""
    return [text[start:end] for start, end in sentence_spans(text)]


def count_sentences(text: str) -> int:
    """The number of sentences in `text` (see `sentence_spans`)."""
    if "." not in text and "?" not in text and "!" not in text:
        return 1 if text.strip() else 0
    return len(sentence_spans(text))


# --- words, Treebank style ---------------------------------------------------------------------------------------

_Rule = tuple[regex.Pattern[str], str | Callable[[regex.Match[str]], str], tuple[str, ...]]


def _rules(*pairs: tuple[str, str]) -> list[_Rule]:
    """Compiled rules, each with the strings one of which a text needs for the rule to match (none: no such test)."""
    return [(regex.compile(pattern), replacement, _TRIGGERS.get(pattern, ())) for pattern, replacement in pairs]


# A rule that cannot match leaves the text as it is, so it is skipped where none of its strings is in the text (a
# quick `in` test instead of a regex pass). Rules that ignore case are tested on the lowercased text, ASCII only.
_TRIGGERS: dict[str, tuple[str, ...]] = {
    r"([«“‘„]|`+)": ("«", "“", "‘", "„", "`"),
    r'^"': ('"',),
    r"(``)": ("``",),
    r"([ (\[{<])(\"|'{2})": ('"', "''"),
    r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)": ("'",),
    r"([^.])(\.)([\]\)}>\"'»”’ ]*+)\s*$": (".",),
    r"([:,])([^\d])": (":", ","),
    r"([:,])$": (":", ","),
    r"\.{2,}": ("..",),
    r"[;@#$%&]": (";", "@", "#", "$", "%", "&"),
    r"[\u2012-\u2015]": ("\u2012", "\u2013", "\u2014", "\u2015"),
    r"([^.])(\.)([\]\)}>\"']*)\s*$": (".",),
    r"[?!]": ("?", "!"),
    r"([^'])' ": ("' ",),
    r"[*]": ("*",),
    r"[\]\[(){}<>]": ("]", "[", "(", ")", "{", "}", "<", ">"),
    r"--": ("--",),
    r"([»”’])": ("»", "”", "’"),
    r"''": ("''",),
    r'"': ('"',),
    r"([^' ])('[sS]|'[mM]|'[dD]|') ": ("' ", "'s ", "'S ", "'m ", "'M ", "'d ", "'D "),
    r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ": ("'",),
    r"(?i) ('t)(is)\b": ("'",),
    r"(?i) ('t)(was)\b": ("'",),
}
_WORD_TRIGGERS = {
    "can": "cannot",
    "d": "d'ye",
    "gim": "gimme",
    "gon": "gonna",
    "got": "gotta",
    "lem": "lemme",
    "more": "more'n",
    "wan": "wanna",
}  # the words written as one, by their first part


# Applied in order to one sentence; the result is split on whitespace.
_TREEBANK: list[_Rule] = _rules(
    # opening quotes
    (r"([«“‘„]|`+)", r" \1 "),
    (r'^"', "``"),
    (r"(``)", r" \1 "),
    (r"([ (\[{<])(\"|'{2})", r"\1 `` "),
    (r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", r"\1 "),
    # punctuation
    (r"([^.])(\.)([\]\)}>\"'»”’ ]*+)\s*$", r"\1 \2 \3 "),
    (r"([:,])([^\d])", r" \1 \2"),
    (r"([:,])$", r" \1 "),
    (r"\.{2,}", r" \g<0> "),
    (r"[;@#$%&]", r" \g<0> "),
    (r"[\u2012-\u2015]", r" \g<0> "),
    (r"([^.])(\.)([\]\)}>\"']*)\s*$", r"\1 \2\3 "),
    (r"[?!]", r" \g<0> "),
    (r"([^'])' ", r"\1 ' "),
    (r"[*]", r" \g<0> "),
    # brackets and double dashes
    (r"[\]\[(){}<>]", r" \g<0> "),
    (r"--", r" -- "),
)
_CLOSING_QUOTES: list[_Rule] = _rules(
    (r"([»”’])", r" \1 "),
    (r"''", " '' "),
    (r'"', " '' "),
    (r"\s+", " "),
    (r"([^' ])('[sS]|'[mM]|'[dD]|') ", r"\1 \2 "),
    (r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r"\1 \2 "),
    # words written as one that are two (cannot, gonna, ...), and 'tis / 'twas
    (r"(?i)\b(can)(not)\b", r" \1 \2 "),
    (r"(?i)\b(d)('ye)\b", r" \1 \2 "),
    (r"(?i)\b(gim)(me)\b", r" \1 \2 "),
    (r"(?i)\b(gon)(na)\b", r" \1 \2 "),
    (r"(?i)\b(got)(ta)\b", r" \1 \2 "),
    (r"(?i)\b(lem)(me)\b", r" \1 \2 "),
    (r"(?i)\b(more)('n)\b", r" \1 \2 "),
    (r"(?i)\b(wan)(na)(?=\s)", r" \1 \2 "),
    (r"(?i) ('t)(is)\b", r" \1 \2 "),
    (r"(?i) ('t)(was)\b", r" \1 \2 "),
)


for _pattern, _, _ in _CLOSING_QUOTES:  # the case-insensitive word rules: their word, tested on lowercased ASCII
    _found = regex.match(r"\(\?i\)\\b\((\w+)\)", _pattern.pattern)
    if _found:
        _TRIGGERS[_pattern.pattern] = ("\0" + _WORD_TRIGGERS[_found.group(1)],)
_CLOSING_QUOTES = [
    (pattern, replacement, _TRIGGERS.get(pattern.pattern, ())) for pattern, replacement, _ in _CLOSING_QUOTES
]
del _pattern, _found


def _tested(rules: list[_Rule]) -> list[tuple[regex.Pattern[str], Any, str | None, Callable[[str], Any] | None]]:
    """The rules with their triggers as tests: a string looked for with `in` (one trigger, or a lowercased word,
    marked by a leading NUL), else one `re` search for any of several triggers (None: no test)."""
    tested = []
    for pattern, replacement, needs in rules:
        single = needs[0] if len(needs) == 1 else None
        search = re.compile("|".join(map(re.escape, needs))).search if len(needs) > 1 else None
        tested.append((pattern, replacement, single, search))
    return tested


_TREEBANK_TESTED = _tested(_TREEBANK)
_CLOSING_QUOTES_TESTED = _tested(_CLOSING_QUOTES)


def _treebank_tokens(sentence: str) -> list[str]:
    """One sentence split into Penn Treebank tokens (NLTK's improved Treebank tokenizer, without its span logic)."""
    for pattern, replacement, single, search in _TREEBANK_TESTED:
        if single is not None:
            if single not in sentence:
                continue
        elif search is not None and search(sentence) is None:
            continue
        sentence = pattern.sub(replacement, sentence)
    sentence = f" {sentence} "
    lower = sentence.lower() if sentence.isascii() else None  # the word rules only insert spaces: lowercased once
    for pattern, replacement, single, search in _CLOSING_QUOTES_TESTED:
        if single is not None:
            if single[0] == "\0":
                if lower is not None and single[1:] not in lower:
                    continue
            elif single not in sentence:
                continue
        elif search is not None and search(sentence) is None:
            continue
        sentence = pattern.sub(replacement, sentence)
    return sentence.split()


def word_tokens(text: str) -> list[str]:
    """Treebank-style word tokens of `text`, sentence by sentence (as NLTK's `word_tokenize`)."""
    return [token for start, end in sentence_spans(text) for token in _treebank_tokens(text[start:end])]


def count_upper_words(text: str) -> int:
    """The number of word tokens written in capitals only (`str.isupper`), such as `NASA`, `I` or `DON'T`'s `DO`."""
    if _without_capitals(text):
        return 0
    total = 0
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        if not _without_capitals(sentence):
            total += sum(token.isupper() for token in _treebank_tokens(sentence))
    return total


# On ASCII text, a capital directly followed by a lowercase letter stays in a token with it, so that token is not in
# capitals, except where the Treebank rules split two letters: before "n't" and in "'tis" / "'twas". A text where
# no capital is in another position (`The`, `Paris`) has no token in capitals.
_MAYBE_CAPITAL_TOKEN = re.compile(r"[A-Z](?:(?![a-z])|n'|is|was)")


def _without_capitals(text: str) -> bool:
    """True when no token of `text` can be in capitals (checked exactly on ASCII text only, where it is cheap)."""
    return text.isascii() and _MAYBE_CAPITAL_TOKEN.search(text) is None
