"""fastText models loaded once per process, and the text preparation every classifier here shares."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.errors import EngineError, RecipeError
from datakit.pipeline.step import shared

LABEL_PREFIX = "__label__"

# fastText initializes its input matrix in ten blocks, one per training thread (a block 10 takes the remainder),
# and fasttext-numpy2 0.10.4 leaves blocks without a thread uninitialized: with fewer threads a model starts from
# leftover memory, differs from run to run and may diverge ("Encountered NaN."). Training therefore runs at
# least this many threads; the price is that runs are no longer bit-for-bit reproducible.
MIN_TRAIN_THREADS = 11

# Everything that is not a letter or a combining mark (Devanagari vowel signs are marks, not letters).
_NOT_LETTERS = r"[^\p{L}\p{M}]+"
# fastText reads one example per line and splits words on whitespace; these break a line.
_LINE_BREAKS = r"[\r\n\v\f\x{0}\x{85}\x{2028}\x{2029}]+"


def one_line(texts: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Texts with line breaks turned into spaces and nulls into '', as fastText's predict and train files need."""
    return pc.replace_substring_regex(pc.fill_null(texts.cast(pa.string()), ""), _LINE_BREAKS, " ")


def langid_text(texts: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Texts as the language-id model sees them: lowercased, letters only (digits, punctuation, markup and
    line breaks become single spaces), trimmed. Script and spelling carry the language; the rest is noise."""
    lowered = pc.utf8_lower(pc.fill_null(texts.cast(pa.string()), ""))
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(lowered, _NOT_LETTERS, " "))


def model_digest(path: str | os.PathLike[str], step_id: str) -> str:
    """A short content hash of a model file, for the step fingerprint; a missing file is a recipe error."""
    file = Path(path)
    if not file.is_file():
        raise RecipeError(f"fastText model file not found: {file}", field=f"steps.{step_id}.with.model")
    stat = file.stat()
    return _digest(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


def _digest(path: str, size: int, mtime: int) -> str:
    key = ("fasttext-digest", path, size, mtime)
    return shared(key, lambda: _hash_file(path))


def _hash_file(path: str) -> str:
    h = hashlib.blake2b(digest_size=12)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model(path: str | os.PathLike[str]) -> Any:
    """The fastText model at `path`, loaded once per process and shared by every step that asks for it
    (a file rewritten since, e.g. by retraining, is loaded anew)."""
    file = Path(path).resolve()
    if not file.is_file():
        raise EngineError(f"fastText model file not found: {file}")
    stat = file.stat()
    return shared(("fasttext", str(file), stat.st_size, stat.st_mtime_ns), lambda: _load(str(file)))


def _load(path: str) -> Any:
    import fasttext

    try:
        return fasttext.load_model(path)
    except ValueError as exc:
        raise EngineError(f"not a fastText model ({exc}): {path}") from None


def model_labels(model: Any) -> list[str]:
    """The model's labels without fastText's '__label__' prefix."""
    return [label.removeprefix(LABEL_PREFIX) for label in model.get_labels()]


def set_column(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    """The batch with column `name` added, or replaced where it exists."""
    if name in batch.schema.names:
        return batch.set_column(batch.schema.get_field_index(name), name, values)
    return batch.append_column(name, values)


def predict_top(model: Any, lines: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The most likely label (prefix removed) and its probability per line; lines must hold no line breaks."""
    texts = lines.to_pylist()
    if not texts:
        return np.array([], dtype=object), np.array([], dtype=np.float64)
    labels, probs = model.predict(texts, k=1)
    top = np.array([row[0].removeprefix(LABEL_PREFIX) if len(row) else "" for row in labels], dtype=object)
    scores = np.array([row[0] if len(row) else 0.0 for row in probs], dtype=np.float64)
    return top, np.clip(scores, 0.0, 1.0)  # softmax rounding can give 1.00001


def predict_label(model: Any, lines: pa.Array | pa.ChunkedArray, label: str) -> np.ndarray:
    """The probability of `label` per line; lines must hold no line breaks."""
    texts = lines.to_pylist()
    if not texts:
        return np.array([], dtype=np.float64)
    labels, probs = model.predict(texts, k=-1)
    wanted = LABEL_PREFIX + label
    scores = np.zeros(len(texts), dtype=np.float64)
    for i, (names, values) in enumerate(zip(labels, probs)):
        for name, value in zip(names, values):
            if name == wanted:
                scores[i] = value
                break
    return np.clip(scores, 0.0, 1.0)
