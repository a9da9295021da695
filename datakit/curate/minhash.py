"""Near-duplicate dedup: MinHash signatures, LSH banding, signature verification and union-find clusters.

How it works (Broder 1997 for MinHash; Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets",
ch. 3 for shingles and banding):

- Shingles: word k-grams, words being the lowercased text split at (ASCII) whitespace with leading and
  trailing punctuation trimmed from each; or character k-grams of the lowercased text with whitespace
  runs collapsed. A document shorter than k tokens is one shingle; a null or token-free one has none
  and is kept without being compared. A word is hashed from its UTF-8 bytes by a fixed polynomial
  hash (`byte_hashes`), so hashes depend on no library version and agree across shards; all-ASCII
  batches are split and trimmed on their bytes with numpy, others with pyarrow's Unicode kernels,
  with the same words either way. Each shingle becomes a 32-bit hash.
- Signatures: permutation i maps a shingle hash x to `(a_i * x + b_i) mod 2**64`, keeping the top 32
  bits (Dietzfelbinger's multiply-add-shift, a strongly universal family for 32-bit keys); the
  signature holds the minimum per permutation. All permutations are computed at once as a
  (permutations x shingles) matrix per chunk of documents and reduced per document with numpy.
- LSH: the signature is cut into `bands` bands of `rows` values; documents whose band hashes agree in
  at least one band are candidates. With Jaccard similarity s, a pair becomes a candidate with
  probability 1 - (1 - s**rows)**bands (the "S-curve").
- Verification (on by default): a candidate pair counts only when the share of equal signature
  values (an unbiased estimate of the Jaccard similarity) reaches `threshold`. This removes the LSH
  false positives, which is what gives the step its precision.
- Clusters: connected components of the counted pairs; one row per cluster is kept by the keep rule.

Choosing bands and rows from a threshold: every layout with bands * rows <= num_perm is scored by the
area under the S-curve below the threshold (false-positive mass) and the area above it left out
(false-negative mass), weighted, and the cheapest wins (`optimal_bands`). With verification a false
positive costs one signature comparison while a false negative is lost for good, so false negatives
weigh 0.9 and false positives 0.1; without verification a false positive becomes a wrong drop and both
weigh 0.5. Permutations beyond bands * rows still take part in verification.

Defaults: space-tokenized 5-word shingles and threshold 0.8 follow the near-duplicate setting of Lee et
al. 2022, "Deduplicating Training Data Makes Language Models Better"; 128 permutations is datasketch's
default; 9-character shingles for `shingle: char` follow MMDS's advice for long documents.

Index layout: each shard's part holds `signatures.npy` (rows x num_perm, uint32), `bands.npy` (bands x
rows, uint64), `valid.npy` and, for keep rules other than earliest, `key.npy`. Finalize loads one band of
every part at a time and only the signatures of documents in candidate pairs, and writes
`representative.npy` (per row: the position of its cluster's kept row in the step's input, -1 when it has
no near-duplicate), the shard `offsets.npy` and per-shard `metrics.npy`. Apply keeps the rows that are
their own representative or have none.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from datakit.curate.clusters import components, representatives
from datakit.curate.text import select_text
from datakit.errors import RecipeError
from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import GlobalStep, Index, MapResult
from datakit.pipeline.steps._arrow import require_columns

EMPTY = np.uint32(0xFFFFFFFF)  # the signature of a document without shingles
BUCKET_WINDOW = 64  # in a bucket, each document is paired with its next 64 members (see candidate_pairs)
CHUNK_SHINGLES = 16384  # shingles hashed at once: a (num_perm x chunk) uint64 matrix that stays in cache
DEFAULT_SIZE = {"word": 5, "char": 9}
# Trimmed from both ends of words: ASCII punctuation plus common Unicode quotes, dashes and marks.
PUNCTUATION = (string.punctuation + "\u00a1\u00ab\u00b7\u00bb\u00bf\u2013\u2014"
               "\u2018\u2019\u201a\u201c\u201d\u201e\u2026")
_TOKEN_SEED = 0x6D696E68
_BAND_SEED = np.uint64(0x62616E64)
_K = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier for polynomial combining (2**64 / golden ratio)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_BYTE_MASKS = np.array([(1 << 8 * k) - 1 for k in range(9)], dtype=np.uint64)  # the low k bytes of a word
_FIRST_MASK = _BYTE_MASKS[np.minimum(np.arange(17), 8)]  # by length (up to 16): the bytes of the first word
_SECOND_MASK = _BYTE_MASKS[np.clip(np.arange(17) - 8, 0, 8)]  # and of the second
_K2 = np.uint64(int(_K) ** 2 % 2**64)
_SEED_K3 = np.uint64(_TOKEN_SEED * int(_K) ** 3 % 2**64)
_POWERS = np.ones(1, dtype=np.uint64)


def mix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: spreads every input bit over all 64 output bits (uint64 in, uint64 out)."""
    x = x ^ (x >> np.uint64(30))
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def _token_hashes(texts: Any, shingle: str) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash per token of every document, in order, and the number of tokens per document."""
    if shingle == "word":
        return _word_hashes(texts)
    text = texts.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars().fill_null("")
    counts = text.str.len_chars().to_numpy().astype(np.int64)
    code_points = np.frombuffer("".join(text.to_list()).encode("utf-32-le"), dtype=np.uint32)
    return mix64(code_points.astype(np.uint64) + np.uint64(_TOKEN_SEED)), counts


def _word_hashes(texts: Any) -> tuple[np.ndarray, np.ndarray]:
    """Word tokens hashed from their UTF-8 bytes (`byte_hashes`), and the number of words per document.

    An all-ASCII batch is lowercased by pyarrow and split and trimmed on its bytes with numpy
    (`ascii_words`); any other batch goes through pyarrow's Unicode-aware kernels. Both give the same
    words and the hash depends on a word's bytes only, so a document gets the same hashes whatever else
    its shard holds.
    """
    import pyarrow.compute as pc

    arrow = texts.to_arrow()
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    if arrow.type != pa.large_string():
        arrow = arrow.cast(pa.large_string())
    if arrow.null_count:
        arrow = pc.fill_null(arrow, "")  # a null slot may still span bytes
    n = len(arrow)
    _, data = _string_bytes(arrow)
    if len(data) == 0 or int(data.max()) < 0x80:
        # A space after every document keeps words from running across documents.
        space = pa.scalar(" ", pa.large_string())
        spaced = pc.binary_join_element_wise(pc.ascii_lower(arrow), space, pa.scalar("", pa.large_string()))
        bounds, data = _string_bytes(spaced)
        starts, ends = ascii_words(data)
        hashes = byte_hashes(_padded_words(data), starts, ends - starts)
        return hashes, np.diff(np.searchsorted(starts, bounds - bounds[0])).astype(np.int64)
    words = pc.ascii_split_whitespace(pc.utf8_lower(arrow))
    flat = pc.utf8_trim(pc.list_flatten(words), characters=PUNCTUATION)
    offsets, data = _string_bytes(flat)
    lengths = np.diff(offsets)
    kept = lengths > 0
    per_doc = pc.fill_null(pc.list_value_length(words), 0).to_numpy()
    counts = np.bincount(np.repeat(np.arange(n), per_doc)[kept], minlength=n).astype(np.int64)
    return byte_hashes(_padded_words(data), offsets[:-1][kept] - offsets[0], lengths[kept]), counts


def _string_bytes(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The n + 1 offsets of a large_string array's values (sliced arrays included) and the bytes they span."""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset:array.offset + len(array) + 1]
    if len(offsets) == 0:
        offsets = np.zeros(1, dtype=np.int64)
    size = int(offsets[-1] - offsets[0])
    if size == 0:
        return offsets, np.zeros(0, dtype=np.uint8)
    return offsets, np.frombuffer(array.buffers()[2], dtype=np.uint8, count=size, offset=int(offsets[0]))


def _is_punctuation(b: np.ndarray) -> np.ndarray:
    """Whether each ASCII byte is one of string.punctuation (the ranges !-/ :-@ [-` {-~)."""
    punct = (b - np.uint8(33)) < 15
    punct |= (b - np.uint8(58)) < 7
    punct |= (b - np.uint8(91)) < 6
    punct |= (b - np.uint8(123)) < 4
    return punct


def ascii_words(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (byte positions) of the words of ASCII text, as the general path finds them.

    That is: split at ASCII whitespace (where pyarrow's ascii_split_whitespace splits: space, tab,
    newline, vertical tab, form feed, carriage return), PUNCTUATION trimmed from both ends of each
    piece, empty pieces dropped.
    """
    size = len(data)
    if size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    solid = data > 32  # not whitespace, unless the text holds control characters other than whitespace
    scratch = np.empty(size + 1, dtype=bool)
    controls = np.count_nonzero(np.less(data, 32, out=scratch[:size]))
    if controls and controls != np.count_nonzero(np.less(data - np.uint8(9), 5, out=scratch[:size])):
        solid |= (data < 9) | ((data - np.uint8(14)) < 18)
    change = scratch  # change[i]: a piece starts or ends at byte i
    change[0], change[size] = solid[0], solid[-1]
    np.not_equal(solid[1:], solid[:-1], out=change[1:size])
    edges = np.flatnonzero(change)
    ends_before = edges.copy()
    ends_before[1::2] -= 1  # each piece's first and last byte, side by side
    edge_punct = _is_punctuation(data[ends_before])
    trim = np.flatnonzero(edge_punct.view(np.uint16))
    starts, ends = edges[0::2], edges[1::2]
    if len(trim) == 0:
        return starts, ends
    # Over the bytes of the pieces to trim: the first and the last byte that is not punctuation.
    starts, ends = starts.copy(), ends.copy()
    s, length = starts[trim], ends[trim] - starts[trim]
    first = np.cumsum(length) - length
    at = np.arange(int(length.sum())) + np.repeat(s - first, length)
    punct = _is_punctuation(data[at])
    lo = np.minimum.reduceat(np.where(punct, size, at), first)
    hi = np.maximum.reduceat(np.where(punct, -1, at), first) + 1
    starts[trim], ends[trim] = lo, np.maximum(hi, lo)
    if (lo >= hi).any():  # punctuation only
        kept = ends > starts
        starts, ends = starts[kept], ends[kept]
    return starts, ends


def _padded_words(data: np.ndarray) -> np.ndarray:
    """`data` copied into 8-byte aligned memory with at least 24 zero bytes after it, as uint64 words."""
    words = np.zeros(len(data) // 8 + 4, dtype=np.uint64)
    words.view(np.uint8)[:len(data)] = data
    return words


def _load(words: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 16 bytes from each byte position `at` of `words` (from `_padded_words`), as two little-endian words."""
    q = at >> 3
    shift = at.view(np.uint64) & np.uint64(7)
    shift <<= np.uint64(3)
    back = np.uint64(64) - shift
    low, mid, high = words[q], words[1:][q], words[2:][q]
    low >>= shift
    low |= mid << back  # numpy defines a shift by 64 as 0
    mid >>= shift
    mid |= high << back
    return low, mid


def _powers(count: int) -> np.ndarray:
    """K**i mod 2**64 for i < count (at least): computed once, grown as needed."""
    global _POWERS
    if len(_POWERS) < count:
        size = max(count, 2 * len(_POWERS))
        table = np.ones(size, dtype=np.uint64)
        table[1:] = np.cumprod(np.full(size - 1, _K, dtype=np.uint64))  # integer products wrap mod 2**64
        _POWERS = table
    return _POWERS


def byte_hashes(words: np.ndarray, starts: np.ndarray, lengths: np.ndarray, block: int = 1 << 15) -> np.ndarray:
    """A 64-bit hash of each byte string [start, start + length) of `words` (from `_padded_words`).

    A string (of at least one byte) is zero-padded to a multiple of 16 bytes and read as little-endian
    64-bit words w_1..w_m; its hash is mix64 of the polynomial seed * K**(m + 1) + w_1 * K**m + ... +
    w_m * K + length, mod 2**64. It depends on the bytes only, not on where they lie. Strings of up to
    16 bytes are hashed `block` at a time, so that the work stays in cache.
    """
    starts = starts.astype(np.int64, copy=False)
    lengths = lengths.astype(np.int64, copy=False)
    out = np.empty(len(starts), dtype=np.uint64)
    for lo in range(0, len(starts), block):
        size = lengths[lo:lo + block]
        first, second = _load(words, starts[lo:lo + block])
        clipped = np.minimum(size, 16)
        first &= _FIRST_MASK[clipped]
        second &= _SECOND_MASK[clipped]
        first *= _K2
        second *= _K
        first += second
        first += size.view(np.uint64)
        first += _SEED_K3
        out[lo:lo + block] = mix64(first)
    long = np.flatnonzero(lengths > 16)
    if len(long):
        size = lengths[long]
        pairs = (size + 15) // 16
        first = np.cumsum(pairs) - pairs
        owner = np.repeat(np.arange(len(long)), pairs)
        step = np.arange(int(pairs.sum())) - first[owner]
        low, high = _load(words, starts[long][owner] + 16 * step)
        rest = size[owner] - 16 * step
        low &= _FIRST_MASK[np.minimum(rest, 16)]
        high &= _SECOND_MASK[np.minimum(rest, 16)]
        powers = _powers(2 * int(pairs.max()) + 2)
        count = 2 * pairs
        low *= powers[count[owner] - 2 * step]
        high *= powers[count[owner] - 2 * step - 1]
        low += high
        seeded = np.uint64(_TOKEN_SEED) * powers[count + 1]
        out[long] = mix64(np.add.reduceat(low, first) + seeded + size.view(np.uint64))
    return out


def shingle_hashes(texts: Any, shingle: Literal["word", "char"] = "word",
                   size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes (held in uint64) of every document's shingles, and offsets (n + 1) into them per document.

    `texts` is a polars String Series; null or token-free documents get no shingles.
    """
    tokens, counts = _token_hashes(texts, shingle)
    n = len(counts)
    per_doc = np.where(counts > 0, np.maximum(counts - size + 1, 1), 0)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per_doc, out=offsets[1:])
    first_token = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=first_token[1:])
    # A polynomial hash of the `size` tokens from every position, over the whole token stream at once.
    padded = np.concatenate([tokens, np.zeros(size, dtype=np.uint64)])
    rolling = padded[:len(tokens)].copy()
    for j in range(1, size):
        rolling *= _K
        rolling += padded[j:j + len(tokens)]
    # The last size - 1 tokens of a document start no shingle; a short document keeps only its first token,
    # and its window, which ran past its end, is redone below.
    starts = np.ones(len(tokens), dtype=bool)
    tail = (first_token + counts)[:, None] - np.arange(1, size)[None, :]
    starts[tail[tail > first_token[:, None]]] = False
    combined = rolling[starts]
    short = np.flatnonzero((counts > 0) & (counts < size))
    if len(short):
        value = np.zeros(len(short), dtype=np.uint64)
        for j in range(size):
            inside = j < counts[short]
            value = value * _K + np.where(inside, padded[first_token[short] + j * inside], np.uint64(0))
        combined[offsets[short]] = value
    combined = mix64(combined)
    combined >>= np.uint64(32)
    return combined, offsets


@functools.lru_cache(maxsize=16)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**64, num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**64, num_perm, dtype=np.uint64)
    return a[:, None], b[:, None]


def signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """The MinHash signature of every document, a (documents x num_perm) uint32 matrix.

    `hashes` and `offsets` are what `shingle_hashes` returns. Documents without shingles get all
    values EMPTY. Work goes by chunks of whole documents of about CHUNK_SHINGLES shingles.
    """
    a, b = _permutations(num_perm, seed)
    n = len(offsets) - 1
    out = np.full((n, num_perm), EMPTY, dtype=np.uint32)
    docs = np.flatnonzero(np.diff(offsets) > 0)
    if len(docs) == 0:
        return out
    starts = offsets[docs]
    cuts = np.flatnonzero(np.diff(starts // CHUNK_SHINGLES)) + 1
    bounds = np.concatenate(([0], cuts, [len(docs)]))
    ends = np.append(starts[bounds[1:-1]], offsets[docs[-1] + 1])
    widest = int(np.max(ends - starts[bounds[:-1]]))
    buffer = np.empty(num_perm * widest, dtype=np.uint64)
    for g in range(len(bounds) - 1):
        lo, hi = bounds[g], bounds[g + 1]
        s0, s1 = int(starts[lo]), int(ends[g])
        matrix = buffer[: num_perm * (s1 - s0)].reshape(num_perm, s1 - s0)
        np.multiply(a, hashes[s0:s1], out=matrix)
        np.add(matrix, b, out=matrix)
        # The shift is monotone, so the minimum of the 64-bit values gives the minimum of their top bits.
        out[docs[lo:hi]] = (np.minimum.reduceat(matrix, starts[lo:hi] - s0, axis=1) >> np.uint64(32)).T
    return out


def band_hashes(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """A 64-bit hash of each band of each signature, as a (bands x documents) uint64 matrix."""
    columns = np.ascontiguousarray(signature[:, : bands * rows].T).astype(np.uint64)
    out = np.empty((bands, signature.shape[0]), dtype=np.uint64)
    for k in range(bands):
        h = np.full(signature.shape[0], _BAND_SEED, dtype=np.uint64)
        for c in range(k * rows, (k + 1) * rows):
            h = (h ^ columns[c]) * _K
        out[k] = mix64(h)
    return out


@functools.lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                  false_negative_weight: float = 0.5) -> tuple[int, int]:
    """The (bands, rows) with bands * rows <= num_perm minimizing the weighted false-positive and
    false-negative mass of the LSH S-curve around `threshold`.

    False-positive mass: the integral over s in [0, threshold] of P(candidate | s) = 1 - (1 - s**r)**b;
    false-negative mass: the integral over [threshold, 1] of 1 - P(candidate | s); both by the
    trapezoid rule on 512 points. Ties go to fewer bands.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    b = np.concatenate([np.arange(1, num_perm // r + 1) for r in range(1, num_perm + 1)])
    r = np.concatenate([np.full(num_perm // r, r) for r in range(1, num_perm + 1)])
    b_col, r_col = b[:, None].astype(float), r[:, None].astype(float)
    below = np.linspace(0.0, threshold, 512)[None, :]
    above = np.linspace(threshold, 1.0, 512)[None, :]
    false_positive = np.trapezoid(1 - (1 - below**r_col) ** b_col, below, axis=1)
    false_negative = np.trapezoid((1 - above**r_col) ** b_col, above, axis=1)
    cost = false_positive_weight * false_positive + false_negative_weight * false_negative
    best = np.lexsort((b, np.round(cost, 12)))[0]
    return int(b[best]), int(r[best])


def candidate_pairs(bands: Iterable[np.ndarray], valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (left < right) of valid documents that share a bucket in at least one band, each pair once.

    Each band is sorted by hash (a stable sort, so bucket members stay in document order) and each
    member is paired with the next BUCKET_WINDOW members of its bucket: every pair in buckets of up to
    BUCKET_WINDOW + 1 documents; in larger ones (mostly many copies of one text) chains of neighbours
    keep the cluster connected while the work stays linear in the bucket size.
    """
    n = len(valid)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    docs = np.flatnonzero(valid)
    codes = [np.zeros(0, dtype=np.int64)]
    for band in bands:
        order = np.argsort(band[docs], kind="stable")
        hashes, members = band[docs][order], docs[order]
        found = []
        for gap in range(1, BUCKET_WINDOW + 1):
            same = hashes[gap:] == hashes[:-gap]
            if not same.any():
                break
            found.append(members[:-gap][same] * n + members[gap:][same])
        if found:
            codes.append(np.unique(np.concatenate(found)))
    pairs = np.unique(np.concatenate(codes))
    return pairs // n, pairs % n


def matching_share(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The share of equal values in each pair of signature rows: the MinHash estimate of their Jaccard similarity."""
    return np.count_nonzero(left == right, axis=1) / left.shape[1]


@dataclass
class Clusters:
    """What the finalize pass finds: pairs considered, pairs kept, and the cluster label of every document."""

    left: np.ndarray  # candidate pairs
    right: np.ndarray
    verified: np.ndarray  # bool per candidate pair: counted as a duplicate pair
    labels: np.ndarray  # per document: its cluster's smallest document index

    @property
    def sizes(self) -> np.ndarray:
        """The size of each document's cluster."""
        return np.bincount(self.labels, minlength=len(self.labels))[self.labels]


def near_duplicate_clusters(bands: Iterable[np.ndarray], valid: np.ndarray,
                            signatures_of: Callable[[np.ndarray], np.ndarray], threshold: float,
                            verify: bool = True, chunk: int = 1 << 16) -> Clusters:
    """Candidate pairs from the band hashes, verified on the signatures, then union-find clusters.

    `bands` yields one array of band hashes over all documents per band; `signatures_of(indices)` returns
    the signature rows of sorted document indices (so signatures may live on disk).
    """
    left, right = candidate_pairs(bands, valid)
    if verify and len(left):
        involved = np.unique(np.concatenate([left, right]))
        rows = signatures_of(involved)
        li, ri = np.searchsorted(involved, left), np.searchsorted(involved, right)
        share = np.concatenate([matching_share(rows[li[k:k + chunk]], rows[ri[k:k + chunk]])
                                for k in range(0, len(left), chunk)])
        verified = share >= threshold - 1e-12
    else:
        verified = np.ones(len(left), dtype=bool)
    return Clusters(left, right, verified, components(len(valid), left[verified], right[verified]))


def keep_key(rule: str, text: Any, score: Any | None) -> np.ndarray | None:
    """The order key of a keep rule (smaller is kept first): None for earliest, -length, or -score (nulls last)."""
    if rule == "longest":
        return -text.str.len_chars().fill_null(0).to_numpy().astype(np.float64)
    if rule == "best":
        values = score.cast(float).fill_null(float("nan")).to_numpy()
        return np.where(np.isnan(values), np.inf, -values)
    return None


@register("minhash_dedup")
class MinHashDedup(GlobalStep):
    """Drop near-duplicate rows (MinHash-LSH over shingles, verified on signatures), keeping one row per cluster."""

    @dataclass(frozen=True)
    class Params:
        column: str = param("text", help="text column to compare, or a list of chat messages (their contents)")
        role: str | None = param(None, help="for a messages column: compare only the turns of this role "
                                            "(default: all turns)")
        shingle: Literal["word", "char"] = param("word", help="shingle unit: word k-grams or character k-grams")
        shingle_size: int | None = param(None, help="tokens per shingle (default 5 words or 9 characters)")
        num_perm: int = param(128, help="MinHash permutations per signature (datasketch's default)")
        threshold: float = param(0.8, help="Jaccard similarity from which two rows are near-duplicates "
                                           "(Lee et al. 2022)")
        bands: int | None = param(None, help="LSH bands (with rows; default: chosen from threshold)")
        rows: int | None = param(None, help="signature values per band (bands * rows <= num_perm; the rest "
                                            "still serve verification)")
        seed: int = param(1, help="seed of the permutations")
        keep: Literal["earliest", "longest", "best"] = param(
            "earliest", help="which row of a cluster is kept: the first, the longest text, or the highest score")
        score_column: str | None = param(None, help="numeric column ranking rows for keep: best (nulls rank last)")
        verify: bool = param(True, help="count a candidate pair only if its estimated Jaccard reaches threshold")
        cluster_column: str | None = param(None, help="write each row's cluster (the position of its kept row in "
                                                      "this step's input; null when unique) instead of dropping")

        def __post_init__(self) -> None:
            if not 0 < self.threshold <= 1:
                raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
            if not 2 <= self.num_perm <= 8192:
                raise ValueError(f"num_perm must be between 2 and 8192, got {self.num_perm}")
            if self.shingle_size is not None and self.shingle_size < 1:
                raise ValueError(f"shingle_size must be at least 1, got {self.shingle_size}")
            if (self.bands is None) != (self.rows is None):
                raise ValueError("bands and rows go together: give both, or neither to derive them from threshold")
            if self.bands is not None and self.rows is not None:
                if self.bands < 1 or self.rows < 1 or self.bands * self.rows > self.num_perm:
                    raise ValueError(f"bands and rows must be positive with bands * rows <= num_perm "
                                     f"({self.num_perm}), got {self.bands} * {self.rows}")
            if self.keep == "best" and self.score_column is None:
                raise ValueError("score_column is required with keep: best")
            if self.score_column is not None and self.keep != "best":
                raise ValueError(f"score_column is only used with keep: best (keep is {self.keep!r})")
            if self.cluster_column is not None and not self.cluster_column:
                raise ValueError("cluster_column must be a column name")

    def version(self) -> str:
        return "byte-hash 1"  # the token hash (byte_hashes); signatures change with it

    def layout(self) -> tuple[int, int]:
        """The (bands, rows) in use: given, or the best for the threshold (see optimal_bands)."""
        p = self.params
        if p.bands is not None:
            return p.bands, p.rows
        weights = (0.1, 0.9) if p.verify else (0.5, 0.5)
        return optimal_bands(p.threshold, p.num_perm, *weights)

    def build(self, shard: int, batch: pa.RecordBatch, part: Path) -> None:
        import polars as pl

        p = self.params
        text = select_text(batch, p.column, p.role, self.context.step_id)
        hashes, offsets = shingle_hashes(text, p.shingle, p.shingle_size or DEFAULT_SIZE[p.shingle])
        signature = signatures(hashes, offsets, p.num_perm, p.seed)
        np.save(part / "signatures.npy", signature)
        np.save(part / "bands.npy", band_hashes(signature, *self.layout()))
        np.save(part / "valid.npy", np.diff(offsets) > 0)
        score = None
        if p.score_column is not None:
            require_columns(batch, [p.score_column], self.context.step_id, "score_column")
            score = pl.from_arrow(batch.column(p.score_column))
            if not score.dtype.is_numeric():
                raise RecipeError(f"score_column '{p.score_column}' must be a numeric column, not {score.dtype}",
                                  field=f"steps.{self.context.step_id}.with.score_column")
        key = keep_key(p.keep, text, score)
        if key is not None:
            np.save(part / "key.npy", key)

    def finalize(self, index: Index, final: Path) -> None:
        shards = index.num_shards or 0
        parts = [np.load(index.part(k) / "valid.npy") for k in range(shards)]
        valid = _cat(parts, bool)
        offsets = np.zeros(shards + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=offsets[1:])

        def band(k: int) -> np.ndarray:
            return _cat([np.load(index.part(s) / "bands.npy", mmap_mode="r")[k] for s in range(shards)], np.uint64)

        def signatures_of(docs: np.ndarray) -> np.ndarray:
            out = np.empty((len(docs), self.params.num_perm), dtype=np.uint32)
            shard_of = np.searchsorted(offsets, docs, side="right") - 1
            cuts = np.searchsorted(shard_of, np.arange(shards + 1))
            for s in np.unique(shard_of):
                lo, hi = cuts[s], cuts[s + 1]
                stored = np.load(index.part(int(s)) / "signatures.npy", mmap_mode="r")
                out[lo:hi] = stored[docs[lo:hi] - offsets[s]]
            return out

        bands, _ = self.layout()
        found = near_duplicate_clusters((band(k) for k in range(bands)), valid, signatures_of,
                                        self.params.threshold, self.params.verify)
        key = None
        if self.params.keep != "earliest":
            key = _cat([np.load(index.part(k) / "key.npy") for k in range(shards)], np.float64)
        rep = representatives(found.labels, key)
        rep[found.sizes == 1] = -1
        np.save(final / "representative.npy", rep)
        np.save(final / "offsets.npy", offsets)

        def per_shard(docs: np.ndarray) -> np.ndarray:
            return np.bincount(np.searchsorted(offsets, docs, side="right") - 1, minlength=shards)

        kept = np.flatnonzero(rep == np.arange(len(rep)))
        np.save(final / "metrics.npy", np.stack([per_shard(kept), per_shard(found.right),
                                                 per_shard(found.right[found.verified])], axis=1))

    def apply(self, shard: int, batch: pa.RecordBatch | None, index: Index) -> MapResult:
        assert batch is not None
        offsets = np.load(index.final / "offsets.npy")
        start = int(offsets[shard])
        rep = np.array(np.load(index.final / "representative.npy", mmap_mode="r")[start:int(offsets[shard + 1])])
        clusters, candidates, verified = (int(v) for v in np.load(index.final / "metrics.npy")[shard])
        metrics = {"clusters": clusters, "candidate_pairs": candidates, "verified_pairs": verified}
        if self.params.cluster_column is not None:
            column = pa.array(rep, type=pa.int64(), mask=rep < 0)
            names = batch.schema.names
            if self.params.cluster_column in names:
                out = batch.set_column(names.index(self.params.cluster_column), self.params.cluster_column, column)
            else:
                out = batch.append_column(self.params.cluster_column, column)
            return MapResult(out, metrics=metrics)
        keep = (rep < 0) | (rep == start + np.arange(len(rep)))
        kept = batch.filter(pa.array(keep))
        return MapResult(kept, dropped={"near_duplicate": batch.num_rows - kept.num_rows}, metrics=metrics)


def _cat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
