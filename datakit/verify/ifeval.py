"""IFEval's 25 instruction checks as `response`-scope verifiers, so datasets can carry IFEval-style constraints.

IFEval (Zhou et al., 2023, "Instruction-Following Evaluation for Large Language Models") attaches verifiable
instructions to prompts. Each verifier here has the instruction's id, takes IFEval's kwargs by their IFEval names and
gives the verdicts of IFEval's reference checker, instruction for instruction, in strict and loose mode (the
registry's `check` implements the modes):

- `keywords:existence` (`keywords`), `keywords:forbidden_words` (`forbidden_words`, whole words),
  `keywords:frequency` (`keyword`, `frequency`, `relation`), `keywords:letter_frequency` (`letter`,
  `let_frequency`, `let_relation`): case-insensitive.
- `language:response_language` (`language`, an ISO 639-1 code), `change_case:english_capital`,
  `change_case:english_lowercase`, `change_case:capital_word_frequency` (`capital_frequency`, `capital_relation`).
- `length_constraints:number_sentences` (`num_sentences`, `relation`), `length_constraints:number_words`
  (`num_words`, `relation`), `length_constraints:number_paragraphs` (`num_paragraphs`, split on `***`),
  `length_constraints:nth_paragraph_first_word` (`num_paragraphs`, `nth_paragraph`, `first_word`, split on blank
  lines).
- `detectable_content:number_placeholders` (`num_placeholders`, `[like this]`), `detectable_content:postscript`
  (`postscript_marker`).
- `detectable_format:number_bullet_lists` (`num_bullets`, exactly), `detectable_format:constrained_response`,
  `detectable_format:number_highlighted_sections` (`num_highlights`), `detectable_format:multiple_sections`
  (`section_spliter`, `num_sections`), `detectable_format:json_format`, `detectable_format:title` (`<<title>>`).
- `combination:two_responses` (split on `******`), `combination:repeat_prompt` (`prompt_to_repeat`, by default the
  prompt), `startend:end_checker` (`end_phrase`), `startend:quotation`, `punctuation:no_comma`.

A `relation` is "less than" or "at least". Kwargs the reference requires are required here too (it would draw a
random value instead); a missing or bad one is a `UsageError` naming the constraint id and the kwarg. Where the
reference reads a keyword, marker or section splitter as a regular expression, these match it literally; a `letter`
that is not a letter (the reference draws a random letter then) is counted as the character given.

Counts follow the reference: words are runs of word characters; sentences and all-capital words come from
`datakit.verify.text` (NLTK's conventions, without NLTK); languages from langdetect with its seed fixed, so the
same text always gets the same verdict. The costly counts are memoized for the last few texts only, since loose
mode and prompts with several instructions ask them of the same text again.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import json
import math
import operator
import random
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

from datakit.errors import UsageError
from datakit.verify import text as _text
from datakit.verify.registry import verifier

if TYPE_CHECKING:
    import numpy as np

RELATIONS: dict[str, Callable[[int, int], bool]] = {"less than": operator.lt, "at least": operator.ge}


def _bad(cid: str, kwarg: str, problem: str) -> UsageError:
    return UsageError(f"constraint {cid!r}: {kwarg} {problem}")


def _ifeval(cid: str, *, needs_prompt: bool = False) -> Callable[[Callable[..., bool]], Callable[..., bool]]:
    """Register an IFEval check as `cid`, checking first that its required kwargs are there and relations valid."""

    def register(fn: Callable[..., bool]) -> Callable[..., bool]:
        parameters = inspect.signature(fn).parameters.values()
        required = frozenset(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is p.empty)
        relations = tuple(name for name in required if name.endswith("relation"))

        @functools.wraps(fn)
        def checked(response: str, **kwargs: Any) -> bool:
            if not required <= kwargs.keys():
                raise _bad(cid, ", ".join(sorted(required - kwargs.keys())), "is required")
            for name in relations:
                if kwargs[name] not in RELATIONS:
                    raise _bad(cid, name, f"must be one of {', '.join(map(repr, RELATIONS))}, got {kwargs[name]!r}")
            return fn(response, **kwargs)

        verifier(cid, needs_prompt=needs_prompt)(checked)
        return fn

    return register


# Memos serve only work shared within one response: several instructions on the same text, and loose mode's
# variants of it (up to eight texts per instruction). They hold the last few texts only, so a response checked again
# later is counted again: throughput measured on repeated responses is what distinct responses get.
MEMO_SIZE = 16
_cached = lru_cache(maxsize=MEMO_SIZE)
_count_sentences = _cached(_text.count_sentences)
_count_upper_words = _cached(_text.count_upper_words)
_count_words = _cached(_text.count_words)


def clear_caches() -> None:
    """Forget the memoized per-text counts and language verdicts (for measurements; results never change)."""
    for memo in (_count_sentences, _count_upper_words, _count_words, _detect_language):
        memo.cache_clear()


# --- keywords ----------------------------------------------------------------------------------------------------


# On ASCII text, a case-insensitive match of an ASCII string is a match of the lowercased strings (`re` folds no
# other character onto an ASCII letter there), so plain string search answers, or rules a word out, at once.


@_ifeval("keywords:existence")
def keywords_existence(response: str, *, keywords: Sequence[str]) -> bool:
    """Every keyword appears in the response (case-insensitive, anywhere)."""
    lower = response.lower() if response.isascii() else None
    return all(
        keyword.lower() in lower if lower is not None and keyword.isascii() else _literal(keyword).search(response)
        for keyword in keywords
    )


@_ifeval("keywords:frequency")
def keywords_frequency(response: str, *, keyword: str, frequency: int, relation: str) -> bool:
    """The keyword appears less than / at least `frequency` times (case-insensitive, anywhere)."""
    keyword = keyword.strip()
    if keyword and keyword.isascii() and response.isascii():  # non-overlapping, leftmost first, as `findall`
        return RELATIONS[relation](response.lower().count(keyword.lower()), frequency)
    return RELATIONS[relation](len(_literal(keyword).findall(response)), frequency)


@_ifeval("keywords:forbidden_words")
def keywords_forbidden_words(response: str, *, forbidden_words: Sequence[str]) -> bool:
    """None of the forbidden words appears as a whole word (case-insensitive)."""
    lower = response.lower() if response.isascii() else None
    return not any(
        (lower is None or not word.isascii() or word.lower() in lower) and _whole_word(word).search(response)
        for word in forbidden_words
    )


@_ifeval("keywords:letter_frequency")
def keywords_letter_frequency(response: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    """The letter appears less than / at least `let_frequency` times (case-insensitive)."""
    letter = letter.strip().lower()
    if len(letter) != 1:
        raise _bad("keywords:letter_frequency", "letter", f"must be one character, got {letter!r}")
    return RELATIONS[let_relation](response.lower().count(letter), let_frequency)


@lru_cache(maxsize=1024)
def _literal(keyword: str) -> re.Pattern[str]:
    return re.compile(re.escape(keyword), re.IGNORECASE)


@lru_cache(maxsize=1024)
def _whole_word(word: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)


# --- language ----------------------------------------------------------------------------------------------------


@_ifeval("language:response_language")
def language_response_language(response: str, *, language: str) -> bool:
    """The response is in the given language (ISO 639-1 code, as langdetect names it)."""
    detected = _detect_language(response)
    return detected is None or detected == language


@_ifeval("change_case:english_capital")
def change_case_english_capital(response: str) -> bool:
    """The response is in English and in capital letters only."""
    return response.isupper() and _detect_language(response) in (None, "en")


@_ifeval("change_case:english_lowercase")
def change_case_english_lowercase(response: str) -> bool:
    """The response is in English and in lowercase letters only."""
    return response.islower() and _detect_language(response) in (None, "en")


_SPACES = re.compile(" {2,}")
_LATIN = re.compile("[A-z]")  # langdetect's test, 'A' <= c <= 'z'
_ASCII_CAPITALS = re.compile("[A-Z]{2,}")


@lru_cache(maxsize=MEMO_SIZE)
def _detect_language(response: str) -> str | None:
    """langdetect's language code for the text, or None when it finds nothing to go on (which counts as a pass)."""
    return _language_detector().detect(response)


@lru_cache(maxsize=1)
def _language_detector() -> _LanguageDetector:
    return _LanguageDetector()


class _LanguageDetector:
    """langdetect's `detect` with its seed fixed at 0, computed faster and with the same result.

    langdetect scores a text by drawing its character n-grams at random and multiplying per-language n-gram
    probabilities, in 7 trials, until one language dominates. The draws are replayed from the seeded generator's
    output (the same `random.Random` calls in the same order). Each trial is then computed at once in log space
    (`_fast_language`): cumulative sums of log-factors, normalized at every fifth draw, where langdetect tests for
    convergence. Its floating-point results differ from langdetect's sequential products in the last bits only, so
    wherever that could change a decision (a convergence test or the final ranking within a small margin, or a
    probability small enough to underflow in the sequential loop and then recover) the exact replay of langdetect's
    operations (`_scores`) decides instead.
    """

    SEED = 0
    TRIALS = 7  # langdetect's defaults
    MAX_LENGTH = 10_000
    CONVERGENCE_MARGIN = 1e-9  # a convergence test this close to its threshold is left to the exact replay
    RANKING_MARGIN = 1e-8  # so is a top probability this close to the runner-up or to the reporting cutoff
    LOG_NORMAL = math.log(1e-270)  # above this (relative to the sum), no product in a five-draw block is subnormal
    LOG_FLOOR = math.log(1e-290)  # subnormal rounding adds less than this per block to a normalized probability
    LOG_NEGLIGIBLE = math.log(1e-100)  # a probability bounded below this cannot move any decision
    LOG_SHARE = -700.0  # the least normalized log probability a trial's shares are computed from (see `_fast_trial`)
    STAIRS = 24  # segments of up to this many checks sum their logs by a matrix product (longer: a running sum)

    def __init__(self) -> None:
        import numpy as np
        from langdetect.detector import Detector
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
        from langdetect.utils.ngram import NGram

        factory = DetectorFactory()
        factory.load_profile(PROFILES_DIRECTORY)
        self._np = np
        self._languages = factory.get_lang_list()
        self._row = {gram: row for row, gram in enumerate(factory.word_lang_prob_map)}
        self._table = np.array(list(factory.word_lang_prob_map.values()), dtype=np.float64)
        self._grams = _GramIndex(self._row)
        self._normalize = NGram.normalize
        self._normalize_vi = NGram.normalize_vi
        self._detector = Detector  # its constants: ALPHA_DEFAULT, ALPHA_WIDTH, BASE_FREQ, CONV_THRESHOLD, ...
        # langdetect's normalization of each character of the Basic Multilingual Plane that it changes (a table
        # built once, as langdetect's own tables are); other characters are normalized as they come.
        self._charmap: dict[int, str] = {}
        for code in range(0x10000):
            normalized = self._normalize(chr(code))
            if normalized != chr(code):
                self._charmap[code] = normalized
        self._upper = np.array([chr(code).isupper() for code in range(0x10000)], dtype=bool)
        # The same per character of the BMP, indexed by the character before normalization: its normalized code
        # (always one character), the table row of that character as a 1-gram (-1: none) and whether it is a
        # capital. A BMP text is then normalized and its 1-grams found by indexing, with no hash probe.
        normalized = np.arange(0x10000, dtype=np.uint64)
        normalized[list(self._charmap)] = [ord(char) for char in self._charmap.values()]
        self._normalized = normalized
        ones = np.full(0x10000, -1, dtype=np.intp)
        for gram, row in self._row.items():
            if len(gram) == 1 and ord(gram) < 0x10000:
                ones[ord(gram)] = row
        self._one_row = ones[normalized.astype(np.intp)]
        self._normalized_upper = self._upper[normalized.astype(np.intp)]
        # ASCII normalizes to 53 symbols (the space and the letters), so every position of an ASCII text, with the
        # two characters before it, is one of 53**3 contexts: a table of those gives its three rows at once (-1
        # where a gram is not in the profiles, all three -1 where the character and the one before are capitals).
        symbols = sorted(set(normalized[:128].tolist()))
        size = len(symbols)
        index = {code: k for k, code in enumerate(symbols)}
        self._ascii_symbol = np.array([index[code] for code in normalized[:128].tolist()], dtype=np.intp)
        self._ascii_space = index[ord(" ")]
        self._ascii_size = size
        context = np.array(symbols, dtype=np.uint64)[np.indices((size, size, size)).reshape(3, -1)]
        two = context[1] << _GramIndex.BITS_PER_CHAR | context[2]
        three = context[0] << 2 * _GramIndex.BITS_PER_CHAR | two
        dense = np.stack(
            [self._one_row[context[2].astype(np.intp)], self._grams.find(two), self._grams.find(three)], axis=1
        )
        upper = self._upper[context.astype(np.intp)]
        dense[upper[1] & upper[2]] = -1
        self._ascii_rows = dense
        # For short segments of a trial, the sums of log-factors up to each check are one product with a matrix of
        # ones below a staircase (row k: the draws up to check k); the first segment's leaves out the four draws
        # before its first one.
        stairs = np.arange(5 * self.STAIRS) < 5 * np.arange(1, self.STAIRS + 1)[:, None]
        first_stairs = stairs.copy()
        first_stairs[:, :4] = False
        self._stairs = (stairs.astype(np.float64), first_stairs.astype(np.float64))

    def detect(self, text: str) -> str | None:
        """The most probable language of `text`, or None where langdetect raises (no usable n-grams)."""
        text = self._clean(text)
        rows = self._ngram_array(text)
        if not len(rows):
            return None
        return self._fast_language(rows) or self._pick(self._scores(rows.tolist()))

    def detect_exact(self, text: str) -> str | None:
        """`detect` by the exact replay alone (the reference the fast path is tested against)."""
        rows = self._ngram_rows(self._clean(text))
        return self._pick(self._scores(rows)) if rows else None

    def _pick(self, scores: np.ndarray) -> str:
        """langdetect's answer from the averaged probabilities: the first of equal maxima above its cutoff."""
        best, best_score = "unknown", self._detector.PROB_THRESHOLD
        for language, score in zip(self._languages, scores.tolist()):
            if score > best_score:  # wins, as in langdetect's (stable) sort
                best, best_score = language, score
        return best

    def _clean(self, text: str) -> str:
        """langdetect's `Detector.append` and `cleaning_text`: no URLs or e-mail addresses, Vietnamese marks
        composed, runs of spaces collapsed, at most 10,000 characters, and Latin letters dropped from a text that
        is mostly in another script (langdetect counts every character from U+0300 up as non-Latin)."""
        if "http" in text:  # each pattern needs its literal: skipped where it cannot match
            text = self._detector.URL_RE.sub(" ", text)
        if "@" in text:
            text = self._detector.MAIL_RE.sub(" ", text)
        if not text.isascii():  # the Vietnamese marks are not ASCII
            text = self._normalize_vi(text)
        text = text[: self.MAX_LENGTH]
        if "  " in text:
            text = _SPACES.sub(" ", text)
        if not text.isascii():
            codes = self._np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
            latin = self._np.count_nonzero((codes >= ord("A")) & (codes <= ord("z")))
            if 2 * latin < self._np.count_nonzero(codes >= 0x300):
                text = _LATIN.sub("", text)
        return text

    def _ngram_array(self, text: str) -> np.ndarray:
        """`_ngram_rows` as a numpy array, computed for all positions at once.

        Position k of the normalized text holds its 1-, 2- and 3-gram (with the text after two spaces, so grams
        reaching before the start begin with a space, or two, which no table gram does). In a text of the Basic
        Multilingual Plane, each character is normalized, and its 1-gram found, by indexing tables made once; the 2-
        and 3-grams are looked up in `_GramIndex`. All three are dropped where the character and the one before it
        are both capitals. An ASCII text needs no lookup at all: its positions index the table of ASCII contexts.
        """
        np = self._np
        if not text:
            return np.empty(0, dtype=np.intp)
        if text.isascii():
            size = self._ascii_size
            padded = np.empty(len(text) + 2, dtype=np.intp)
            padded[:2] = self._ascii_space
            np.take(self._ascii_symbol, np.frombuffer(text.encode("ascii"), dtype=np.uint8), out=padded[2:])
            keys = padded[:-2] * (size * size)
            keys += padded[1:-1] * size
            keys += padded[2:]
            rows = self._ascii_rows.take(keys, axis=0).ravel()
            return rows[rows >= 0]
        if max(text) <= "\uffff":  # one UTF-16 unit per character (lone surrogates included)
            codes = np.frombuffer(text.encode("utf-16-le", "surrogatepass"), dtype="<u2")
        else:
            return self._ngram_array_beyond(text)
        size = len(text)
        padded = np.empty(size + 2, dtype=np.uint64)
        padded[:2] = 32  # two spaces
        np.take(self._normalized, codes, out=padded[2:])
        last = padded[2:]
        keys = np.empty((2, size), dtype=np.uint64)
        np.bitwise_or(padded[1:-1] << _GramIndex.BITS_PER_CHAR, last, out=keys[0])
        np.bitwise_or(padded[:-2] << 2 * _GramIndex.BITS_PER_CHAR, keys[0], out=keys[1])
        rows = np.empty((size, 3), dtype=np.intp)
        np.take(self._one_row, codes, out=rows[:, 0])
        rows[:, 1:] = self._grams.find(keys.ravel()).reshape(2, size).T
        upper = self._normalized_upper[codes]
        rows[1:][upper[1:] & upper[:-1]] = -1
        rows = rows.ravel()
        return rows[rows >= 0]

    def _ngram_array_beyond(self, text: str) -> np.ndarray:
        """`_ngram_array` for a text with characters beyond the BMP: those are normalized as they come, and every
        character's case is looked up one by one."""
        np = self._np
        beyond = {ord(char): self._normalize(char) for char in set(text) if char > "\uffff"}
        text = text.translate({**self._charmap, **beyond})
        codes = np.frombuffer(("  " + text).encode("utf-32-le"), dtype="<u4").astype(np.uint64)
        last = codes[2:]
        keys = np.empty((len(text), 3), dtype=np.uint64)
        keys[:, 0] = last
        keys[:, 1] = (codes[1:-1] << _GramIndex.BITS_PER_CHAR) | last
        keys[:, 2] = (codes[:-2] << 2 * _GramIndex.BITS_PER_CHAR) | keys[:, 1]
        rows = self._grams.find(keys.ravel()).reshape(len(text), 3)
        upper = np.array([False] + [char.isupper() for char in text], dtype=bool)
        rows[upper[1:] & upper[:-1]] = -1
        rows = rows.ravel()
        return rows[rows >= 0]

    def _ngram_rows(self, text: str) -> list[int]:
        """The table rows of the text's 1- to 3-grams, in langdetect's order (`NGram` fed the text after a space).

        At each character langdetect takes its 1-, 2- and 3-gram, in that order; a gram that crosses a space other
        than at its start is not in the table, nor is the 1-gram " " (so none of those need skipping), and a
        character in capitals right after another adds none. The grams are built for the whole text with `map`.
        """
        charmap = self._charmap
        if not text.isascii() and max(text) > "\uffff":
            charmap = {**charmap, **{ord(char): self._normalize(char) for char in set(text) if char > "\uffff"}}
        text = text.translate(charmap)
        padded = " " + text
        row = self._row.get
        ones = list(map(row, text))
        twos = list(map(row, map(operator.add, padded, text)))
        threes = [None, *map(row, map(operator.add, map(operator.add, padded, text), text[1:]))]
        if text.isascii():
            capitals = [k for run in _ASCII_CAPITALS.finditer(text) for k in range(run.start() + 1, run.end())]
        else:
            upper = [char.isupper() for char in text]
            capitals = [k for k in range(1, len(text)) if upper[k] and upper[k - 1]]
        for k in capitals:
            ones[k] = twos[k] = threes[k] = None
        return [found for grams in zip(ones, twos, threes) for found in grams if found is not None]

    def _fast_language(self, rows: np.ndarray) -> str | None:
        """langdetect's answer computed a trial at a time in log space, or None where only the exact replay can tell.

        It stops as soon as the trials left could not change the answer (often after four of the seven).
        """
        constants, trials = self._detector, self.TRIALS
        cutoff = constants.PROB_THRESHOLD
        draws = _RandomStream.draws(rows)
        total = self._np.zeros(self._table.shape[1])  # the sum of the trials' probabilities (langdetect's, x trials)
        word, spare, guess = 0, 0.0, 12  # guess: how many checks a trial takes, to size the first computation
        for trial in range(trials):
            weight, word, spare = _trial_weight(constants, trial, word, spare)
            result = self._fast_trial(draws, draws.first_from(word), weight, guess)
            if result is None:
                return None
            last, checks, prob = result
            total += prob
            if trial >= (trials - 1) // 2:  # before, the leader has too little to be out of reach
                second, best = sorted(total.tolist())[-2:]
                best, second = best / trials, second / trials
                # Settled early: the trials left add at most (trials left) / trials to any language, so a lead larger
                # than that (above the cutoff) cannot be overtaken, and langdetect's answer is known without them.
                if best - second > (trials - 1 - trial) / trials + self.RANKING_MARGIN and (
                    best > cutoff + self.RANKING_MARGIN
                ):
                    return self._languages[int(total.argmax())]
            word = draws.word_after(last)
            guess = checks + 4
        if best - second <= self.RANKING_MARGIN or abs(best - cutoff) <= self.RANKING_MARGIN:
            return None
        return self._languages[int(total.argmax())] if best > cutoff else "unknown"

    def _fast_trial(self, draws: _Draws, first: int, weight: float, guess: int) -> tuple[int, int, np.ndarray] | None:
        """One trial from draw `first`: its last draw, its number of checks and its probabilities (None: undecided).

        A trial's probabilities at draw i are its cumulative products of (weight + n-gram probability), normalized;
        their logs are cumulative sums: in a short segment, of every factor's log, summed up to each check by one
        matrix product; in a long one, of five-draw block products (never below about 1e-23, so never subnormal), one
        `log` each, and a running sum. The sums are normalized at each check (after draws 0, 5, 10, ...), and the
        trial stops at the first check where the largest probability passes the threshold, or at the iteration limit.
        The first block is the first draw alone (four factors of 1 before it). The checks are computed `guess` at a
        time, then four times as many, each segment going on from the last one's sums; the tests run over each
        segment's sums (a few numbers) in Python.
        A test within its margin of the threshold gives None, and so does a probability that falls below 1e-270 of
        the total (where the sequential loop may flush or round it) unless, bounded from above as if it never fell
        under 1e-290, it stays below 1e-100 until the trial ends.
        """
        np, constants = self._np, self._detector
        table, languages = self._table, self._table.shape[1]
        threshold, max_checks = constants.CONV_THRESHOLD, constants.ITERATION_LIMIT // 5
        near = threshold - self.CONVERGENCE_MARGIN
        barely = threshold + self.CONVERGENCE_MARGIN
        earlier: list[tuple[np.ndarray, np.ndarray]] = []  # (normalized log sums, totals) of the segments before
        least = math.inf  # the smallest normalized log sum so far
        offset = None  # the unnormalized log sums at the end of the segment before
        computed, start, count = 0, first, guess + 1  # checks computed, the segment's first block, its checks
        while True:
            count = min(count, max_checks + 1 - computed)
            factors = table.take(draws.blocks(start, count), axis=0)
            factors += weight
            if count <= self.STAIRS and weight > 0.0:  # every factor's log, summed up to each check at once
                stairs = self._stairs[offset is None]
                sums = stairs[:count, : 5 * count] @ np.log(factors, out=factors)
            else:
                if offset is None:
                    factors[:4] = 1.0
                logs = np.multiply.reduce(factors.reshape(count, 5, languages), axis=1)
                sums = np.add.accumulate(np.log(logs, out=logs), axis=0)  # ufunc methods: no Python wrapper
            if offset is not None:
                sums += offset
            offset = sums[-1]
            normal = sums - np.maximum.reduce(sums, axis=1, keepdims=True)
            # Raised to LOG_SHARE first: `exp` is many times slower where its result is subnormal or zero, and a
            # share below 1e-304 moves no total or probability by anything a decision could see.
            shares = np.maximum(normal, self.LOG_SHARE)
            np.exp(shares, out=shares)
            totals = np.add.reduce(shares, axis=1)
            end = count - 1 if computed + count > max_checks else count  # the check at the limit stops the trial
            stop = -1
            for k, value in enumerate(totals.tolist()):
                if value * threshold < 1.0 or k == end:  # the largest probability, 1 / value, above the threshold
                    stop = k
                    break
                if value * near < 1.0:  # not converged but nearly
                    return None
            if stop >= 0:
                break
            earlier.append((normal, totals))
            least = min(least, np.minimum.reduce(normal, axis=None).item())
            computed, start, count = computed + count, start + 5 * count, 4 * count
        if value * barely >= 1.0 and computed + stop < max_checks:  # converged but barely
            return None
        normal, totals = normal[: stop + 1], totals[: stop + 1]
        checks = computed + stop
        # Each draw moves two languages' log probabilities apart by at most log((1 + weight) / weight) (table
        # probabilities are at most 1), so after few draws none can have fallen far: no need to look.
        if weight <= 0.0 or (5 * checks + 1) * math.log1p(1.0 / weight) - math.log(languages) >= -self.LOG_NORMAL:
            least = min(least, np.minimum.reduce(normal, axis=None).item())
        if least - math.log(languages) < self.LOG_NORMAL:
            logp = np.concatenate([s for s, _ in earlier] + [normal])  # (each total is at most `languages`)
            logp -= np.log(np.concatenate([t for _, t in earlier] + [totals]))[:, None]
            fallen = np.minimum.accumulate(logp, axis=0) < self.LOG_NORMAL
            bound = logp + np.maximum(np.maximum.accumulate(self.LOG_FLOOR - logp, axis=0), 0.0)
            if (fallen & (bound >= self.LOG_NEGLIGIBLE)).any():
                return None
        return first + 5 * checks, checks, shares[stop] / totals[stop]

    def _scores(self, rows: list[int]) -> np.ndarray:
        """Per-language probabilities averaged over the trials (langdetect's `_detect_block`), exactly.

        The draws are replayed from the seeded generator's output (`_RandomStream`), five multiplications go to
        numpy at once (`multiply.reduce` along the first axis multiplies row after row, in langdetect's order),
        and the maximum is taken before the division by the sum (division by a positive number keeps the order).
        """
        np, constants, trials = self._np, self._detector, self.TRIALS
        unique = sorted(set(rows))
        position = {row: k for k, row in enumerate(unique)}
        draws = _RandomStream.draws(np.array([position[row] for row in rows], dtype=np.intp))
        table = self._table[unique]
        languages = len(self._languages)
        threshold, limit = constants.CONV_THRESHOLD, constants.ITERATION_LIMIT
        total = np.zeros(languages)
        word = 0  # position in the generator's output
        spare = 0.0
        for trial in range(trials):
            weight, word, spare = _trial_weight(constants, trial, word, spare)
            factors = weight + table
            first, picks = draws.from_word(word, limit + 1)
            prob = np.full(languages, 1.0 / languages) * factors[picks[0]]
            i = 0
            while True:  # i: the index of the last draw multiplied in; a check after draw 0, 5, 10, ...
                values = prob.tolist()
                total_prob = sum(values)  # the builtin sum, as langdetect (numpy sums in another order)
                prob /= total_prob
                if max(values) / total_prob > threshold or i >= limit:
                    break
                block = factors[picks[i + 1 : i + 6]]
                block[0] *= prob
                prob = np.multiply.reduce(block, axis=0)
                i += 5
            word = draws.word_after(first + i)
            total += prob / trials
        return total


class _GramIndex:
    """langdetect's n-grams to their table rows, for many keys at once: a hash table with linear probing in numpy.

    One probe is vectorized; the few keys whose slot holds another key and had to pass keys on are looked up in a
    dict.

    A gram's key packs its characters' code points, 21 bits each (the BMP only is looked up this way); 1-, 2- and
    3-gram keys cannot collide, since no gram starts with U+0000 (langdetect normalizes it to a space).
    """

    BITS = 20  # 2**20 slots for some 90,000 grams: short probe runs
    BITS_PER_CHAR = 21
    EMPTY = (1 << 64) - 1
    MULTIPLIER = 0x9E3779B97F4A7C15  # Fibonacci hashing

    def __init__(self, rows: dict[str, int]) -> None:
        import numpy as np

        self._np = np
        self._mask = (1 << self.BITS) - 1
        self._multiplier = np.uint64(self.MULTIPLIER)
        self._shift = np.uint64(64 - self.BITS)
        self._keys = np.full(1 << self.BITS, self.EMPTY, dtype=np.uint64)
        self._rows = np.full(1 << self.BITS, -1, dtype=np.intp)
        self._row_of = {self.key(gram): row for gram, row in rows.items()}
        keys = np.array(list(self._row_of), dtype=np.uint64)
        values = np.array(list(self._row_of.values()), dtype=np.intp)
        pending = np.arange(len(keys))
        slots = self._slots(keys)
        while len(pending):  # each round: one key into each free slot wanted, the others move one slot on
            wanted = slots[pending]
            free = np.flatnonzero(self._keys[wanted] == self.EMPTY)
            taken, first = np.unique(wanted[free], return_index=True)
            winners = pending[free[first]]
            self._keys[taken], self._rows[taken] = keys[winners], values[winners]
            keep = np.ones(len(pending), dtype=bool)
            keep[free[first]] = False
            pending = pending[keep]
            slots[pending] = (slots[pending] + 1) & self._mask
        # The slots whose keys did not all find room in them: only there may a key be further on.
        self._displaced = np.zeros(1 << self.BITS, dtype=bool)
        home = self._slots(keys)
        self._displaced[home[self._keys[home] != keys]] = True

    @classmethod
    def key(cls, gram: str) -> int:
        """The key of one gram."""
        key = 0
        for char in gram:
            key = key << cls.BITS_PER_CHAR | ord(char)
        return key

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        return ((keys * self._multiplier) >> self._shift).astype(self._np.intp)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The row of each key, -1 where it is no gram."""
        slots = self._slots(keys)
        stored = self._keys[slots]
        found = self._rows[slots]  # right where the key is in its own slot, and -1 where that slot is empty
        missed = stored != keys
        found[missed] = -1
        rest = self._np.flatnonzero(missed & self._displaced[slots])  # the key may be further on
        if len(rest):
            found[rest] = list(map(self._row_of.get, keys[rest].tolist(), itertools.repeat(-1)))
        return found


def _trial_weight(constants: Any, trial: int, word: int, spare: float) -> tuple[float, int, float]:
    """A trial's smoothing weight, the stream position after it and the spare normal value, as langdetect draws them.

    `Random.gauss` makes two normal values from four outputs and keeps the second for the next call, so even
    trials read the stream and odd trials use the spare.
    """
    if trial % 2 == 0:
        gauss, spare = _RandomStream.gauss_pair(word)
        word += 4
    else:
        gauss = spare
    return (constants.ALPHA_DEFAULT + gauss * constants.ALPHA_WIDTH) / constants.BASE_FREQ, word, spare


class _RandomStream:
    """The output of `random.Random(0)` (langdetect's generator, seeded), replayed without calling it.

    Python's `Random.choice(seq)` takes 32-bit outputs, shifts each right to `len(seq).bit_length()` bits and keeps
    the first below `len(seq)`; `Random.gauss` takes four outputs (two `random()` calls) for a pair of normal
    values. So the draws langdetect makes depend only on the number of n-grams and on where in the output each trial
    starts: this holds the output (a constant) and finds the draws for one text in it with numpy.
    """

    SEED = 0
    CHUNK = 1024  # outputs scanned at a time for one text's draws
    _words: ClassVar[list[int]] = []
    _array: ClassVar[Any] = None

    @classmethod
    def words(cls, count: int) -> Any:
        """The first `count` (or more) 32-bit outputs, as a numpy array."""
        if len(cls._words) < count:
            import numpy as np

            size = max(count, 2 * len(cls._words), 1 << 16)
            cls._words = np.frombuffer(
                random.Random(cls.SEED).getrandbits(32 * size).to_bytes(4 * size, "little"), dtype="<u4"
            ).tolist()
            cls._array = np.array(cls._words, dtype=np.int64)
        return cls._array

    @classmethod
    def gauss_pair(cls, word: int) -> tuple[float, float]:
        """The two normal values `Random.gauss` makes from the four outputs at `word` (its formula, in order)."""
        cls.words(word + 4)
        a, b, c, d = cls._words[word : word + 4]
        first = ((a >> 5) * 67108864.0 + (b >> 6)) * (1.0 / 9007199254740992.0)
        second = ((c >> 5) * 67108864.0 + (d >> 6)) * (1.0 / 9007199254740992.0)
        x2pi = first * math.tau
        g2rad = math.sqrt(-2.0 * math.log(1.0 - second))
        return 0.0 + math.cos(x2pi) * g2rad * 1.0, 0.0 + math.sin(x2pi) * g2rad * 1.0

    @classmethod
    def draws(cls, picks: Any) -> _Draws:
        """The accepted draws for `random.choice(picks)`, found in the output as far as needed."""
        return _Draws(cls, picks)


class _Draws:
    """For one sequence: the output positions where `random.choice` accepts a draw, and the elements drawn.

    The elements are kept after `PAD` placeholders, so that the blocks of five draws that end at each check (the
    first one reaching back before the first draw) are one slice.
    """

    PAD = 4

    def __init__(self, stream: type[_RandomStream], picks: Any) -> None:
        import numpy as np

        self._np, self._stream, self._picks = np, stream, picks
        self._size = len(picks)
        self._shift = 32 - self._size.bit_length()
        self._scanned = 0
        self._positions = np.empty(0, dtype=np.int64)
        self._chosen = np.zeros(self.PAD, dtype=picks.dtype)

    def _scan(self) -> None:
        """Scan the next chunk of outputs."""
        np = self._np
        start = self._scanned
        stop = start + self._stream.CHUNK
        values = self._stream.words(stop)[start:stop] >> self._shift
        accepted = np.flatnonzero(values < self._size)
        self._positions = np.concatenate((self._positions, accepted + start))
        self._chosen = np.concatenate((self._chosen, self._picks[values[accepted]]))
        self._scanned = stop

    def _scan_to(self, draws: int) -> None:
        """Scan until at least `draws` draws are known."""
        while draws > len(self._positions):
            self._scan()

    def from_word(self, word: int, count: int) -> tuple[int, Any]:
        """The index of the first draw at or after output `word`, and the elements of the next `count` draws."""
        first = self.first_from(word)
        self._scan_to(first + count)
        return first, self._chosen[self.PAD + first : self.PAD + first + count]

    def first_from(self, word: int) -> int:
        """The index of the first draw at or after output `word`."""
        while not len(self._positions) or self._positions[-1] < word:
            self._scan()
        return int(self._positions.searchsorted(word))

    def blocks(self, first: int, count: int) -> Any:
        """The elements of draws `first - 4` to `first + 5 * count - 5`, placeholders before draw 0 (`count`
        blocks of five, each ending at the check after draw `first + 5 * k`)."""
        self._scan_to(first + 5 * count - self.PAD)
        return self._chosen[first : first + 5 * count]

    def word_after(self, draw: int) -> int:
        """The output position right after draw number `draw`."""
        return int(self._positions[draw]) + 1


# --- length ------------------------------------------------------------------------------------------------------


@_ifeval("length_constraints:number_sentences")
def length_constraints_number_sentences(response: str, *, num_sentences: int, relation: str) -> bool:
    """The response has less than / at least `num_sentences` sentences."""
    return RELATIONS[relation](_count_sentences(response), num_sentences)


@_ifeval("length_constraints:number_words")
def length_constraints_number_words(response: str, *, num_words: int, relation: str) -> bool:
    """The response has less than / at least `num_words` words."""
    return RELATIONS[relation](_count_words(response), num_words)


_DIVIDER = re.compile(r"\s?\*\*\*\s?")


@_ifeval("length_constraints:number_paragraphs")
def length_constraints_number_paragraphs(response: str, *, num_paragraphs: int) -> bool:
    """Exactly `num_paragraphs` paragraphs separated by the markdown divider `***` (none of them empty)."""
    return _count_parts(_DIVIDER.split(response)) == num_paragraphs


@_ifeval("length_constraints:nth_paragraph_first_word")
def length_constraints_nth_paragraph_first_word(
    response: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
    """Exactly `num_paragraphs` paragraphs split by blank lines; paragraph `nth_paragraph` starts with `first_word`."""
    paragraphs = response.split("\n\n")
    count = sum(1 for paragraph in paragraphs if paragraph.strip())
    if not 0 < nth_paragraph <= count:
        return False
    words = paragraphs[nth_paragraph - 1].split()
    if not words:
        return False
    word = words[0].lstrip("'").lstrip('"')
    head = "".join(char.lower() for char in _FIRST_WORD.match(word).group())  # per character, as the reference
    return count == num_paragraphs and head == first_word.lower()


_FIRST_WORD = re.compile(r"[^.,?!'\"]*")


def _count_parts(parts: list[str]) -> int:
    """How many non-empty parts a split gave; -1 when an empty part is not at either end."""
    last = len(parts) - 1
    count = 0
    for index, part in enumerate(parts):
        if part.strip():
            count += 1
        elif 0 < index < last:
            return -1
    return count


# --- content -----------------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\[.*?\]")


@_ifeval("detectable_content:number_placeholders")
def detectable_content_number_placeholders(response: str, *, num_placeholders: int) -> bool:
    """At least `num_placeholders` placeholders in square brackets, such as `[address]`."""
    return len(_PLACEHOLDER.findall(response)) >= num_placeholders


# The reference spells out two markers; any other one is looked for literally.
_POSTSCRIPTS = {"P.P.S": re.compile(r"p\.\s?p\.\s?s"), "P.S.": re.compile(r"p\.\s?s\.")}


@_ifeval("detectable_content:postscript")
def detectable_content_postscript(response: str, *, postscript_marker: str) -> bool:
    """The response contains a postscript starting with the marker (`P.S.`, `P.P.S`, ...; case-insensitive)."""
    marker = postscript_marker.strip()
    pattern = _POSTSCRIPTS.get(marker)
    if pattern is None:
        return marker.lower() in response.lower()
    return pattern.search(response.lower()) is not None


# --- format ------------------------------------------------------------------------------------------------------

_BULLETS = (re.compile(r"^\s*\*[^\*].*$", re.MULTILINE), re.compile(r"^\s*-.*$", re.MULTILINE))


@_ifeval("detectable_format:number_bullet_lists")
def detectable_format_number_bullet_lists(response: str, *, num_bullets: int) -> bool:
    """Exactly `num_bullets` markdown bullet points (lines starting with `*` or `-`)."""
    return sum(len(pattern.findall(response)) for pattern in _BULLETS) == num_bullets


_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


@_ifeval("detectable_format:constrained_response")
def detectable_format_constrained_response(response: str) -> bool:
    """The response contains one of the fixed answers "My answer is yes./no./maybe."."""
    return any(option in response for option in _OPTIONS)


_HIGHLIGHTS = (re.compile(r"\*[^\n\*]*\*"), re.compile(r"\*\*[^\n\*]*\*\*"))


@_ifeval("detectable_format:number_highlighted_sections")
def detectable_format_number_highlighted_sections(response: str, *, num_highlights: int) -> bool:
    """At least `num_highlights` non-empty markdown highlights, `*like this*` or `**like this**`."""
    found = sum(1 for pattern in _HIGHLIGHTS for span in pattern.findall(response) if span.strip("*").strip())
    return found >= num_highlights


@_ifeval("detectable_format:multiple_sections")
def detectable_format_multiple_sections(response: str, *, section_spliter: str, num_sections: int) -> bool:
    """At least `num_sections` sections, each starting with the splitter and a number (`SECTION 1`)."""
    return len(_section_splitter(section_spliter.strip()).split(response)) - 1 >= num_sections


@lru_cache(maxsize=256)
def _section_splitter(word: str) -> re.Pattern[str]:
    return re.compile(rf"\s?{re.escape(word)}\s?\d+\s?")


_FENCES = ("```json", "```Json", "```JSON", "```")


@_ifeval("detectable_format:json_format")
def detectable_format_json_format(response: str) -> bool:
    """The whole response is one JSON value, optionally in a markdown code fence."""
    body = response.strip()
    for fence in _FENCES:
        body = body.removeprefix(fence)
    body = body.removesuffix("```").strip()
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


_TITLE = re.compile(r"<<[^\n]+>>")


@_ifeval("detectable_format:title")
def detectable_format_title(response: str) -> bool:
    """The response contains a non-blank title in double angular brackets, such as `<<poem of joy>>`."""
    return any(title.lstrip("<").rstrip(">").strip() for title in _TITLE.findall(response))


# --- combination -------------------------------------------------------------------------------------------------


@_ifeval("combination:two_responses")
def combination_two_responses(response: str) -> bool:
    """Two different responses separated by `******` (and nothing else between separators)."""
    parts = response.split("******")
    answers = [part.strip() for part in parts if part.strip()]
    return _count_parts(parts) == 2 and answers[0] != answers[1]


@_ifeval("combination:repeat_prompt", needs_prompt=True)
def combination_repeat_prompt(response: str, *, prompt_to_repeat: str | None = None, prompt: str | None = None) -> bool:
    """The response starts with the request repeated word for word (case-insensitive); the prompt by default."""
    request = prompt_to_repeat or prompt
    if not request:
        raise _bad("combination:repeat_prompt", "prompt_to_repeat", "is required (or the prompt)")
    return response.strip().lower().startswith(request.strip().lower())


# --- start and end -----------------------------------------------------------------------------------------------


@_ifeval("startend:end_checker")
def startend_end_checker(response: str, *, end_phrase: str) -> bool:
    """The response ends with the phrase (case-insensitive; surrounding quotes and spaces ignored)."""
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


@_ifeval("startend:quotation")
def startend_quotation(response: str) -> bool:
    """The whole response is wrapped in double quotation marks."""
    body = response.strip()
    return len(body) > 1 and body[0] == '"' and body[-1] == '"'


# --- case and punctuation ----------------------------------------------------------------------------------------


@_ifeval("change_case:capital_word_frequency")
def change_case_capital_word_frequency(response: str, *, capital_frequency: int, capital_relation: str) -> bool:
    """Words in all capital letters appear less than / at least `capital_frequency` times."""
    return RELATIONS[capital_relation](_count_upper_words(response), capital_frequency)


@_ifeval("punctuation:no_comma")
def punctuation_no_comma(response: str) -> bool:
    """The response contains no comma."""
    return "," not in response
