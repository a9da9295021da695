"""Training fastText text classifiers (e.g. quality classifiers) from labeled rows, with a held-out check."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.curate.classifiers._fasttext import LABEL_PREFIX, MIN_TRAIN_THREADS, one_line, predict_top
from datakit.curate.classifiers.quality import DEFAULT_POSITIVE, sidecar_path
from datakit.curate.text import select_text
from datakit.errors import RecipeError, UsageError


@dataclass(frozen=True)
class FastTextSettings:
    """fastText's supervised training settings. Word bigrams as in DCLM's quality classifier (Li et al., 2024);
    the rest are fastText's own supervised defaults, except a smaller hash table (`bucket`) to keep models
    small. fastText runs at least `MIN_TRAIN_THREADS` threads (see there), so a seed fixes the validation
    split but not every bit of the model."""

    epochs: int = 5
    lr: float = 0.1
    dim: int = 100
    word_ngrams: int = 2
    min_count: int = 1
    bucket: int = 200_000
    threads: int = MIN_TRAIN_THREADS

    def fasttext_args(self, seed: int) -> dict[str, Any]:
        return {"epoch": self.epochs, "lr": self.lr, "dim": self.dim, "wordNgrams": self.word_ngrams,
                "minCount": self.min_count, "bucket": self.bucket, "thread": max(self.threads, MIN_TRAIN_THREADS),
                "seed": seed, "loss": "softmax", "verbose": 0}


@dataclass
class TrainedClassifier:
    """What training produced: where the model is, its labels, the row counts and the held-out metrics."""

    model: str
    labels: list[str]
    positive: str | None
    text_column: str
    label_column: str
    threshold: float | None
    valid_fraction: float
    seed: int
    settings: dict[str, Any]
    counts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_classifier(
    data: str | os.PathLike[str] | pa.Table | Iterable[Mapping[str, Any]],
    output: str | os.PathLike[str],
    *,
    text_column: str = "text",
    label_column: str = "label",
    role: str | None = "assistant",
    threshold: float | None = None,
    positive: str | None = None,
    valid_fraction: float = 0.1,
    seed: int = 0,
    settings: FastTextSettings | None = None,
) -> TrainedClassifier:
    """Train a fastText classifier on `text_column` to predict `label_column`; write it to `output`.

    The text column holds text, or chat messages, of which the turns of `role` are read (every turn when None).

    `data` is a Parquet/JSON Lines file or folder (anything `datakit.io` reads), an Arrow table, or rows as
    dicts. Labels are text or true/false (true -> 'good', false -> 'bad'); numeric labels (reward or judge
    scores) need `threshold`: rows scoring at least it are 'good', the others 'bad'. Rows with no label or no
    text are skipped. A seeded `valid_fraction` of the rows is held out: the model learns from the rest, and its
    accuracy (and the precision and recall of `positive`, default 'good') on the held-out rows is reported.
    The model is written atomically, with a JSON sidecar `output + '.json'` holding labels, settings, counts
    and metrics. Bad input (missing column, empty data, one class) raises UsageError and writes nothing.
    """
    import fasttext

    settings = settings or FastTextSettings()
    if not 0.0 <= valid_fraction < 1.0:
        raise UsageError(f"the validation fraction must be at least 0 and below 1, got {valid_fraction}")
    table = _as_table(data)
    for column, option in ((text_column, "text column"), (label_column, "label column")):
        if column not in table.column_names:
            raise UsageError(f"{option} '{column}' is not in the data; columns: "
                             f"{', '.join(table.column_names) or '(none)'}")
    try:
        texts = one_line(select_text(table, text_column, role, "classifier").to_arrow())
    except RecipeError as exc:
        raise UsageError(f"text column '{text_column}': {exc.message}") from None
    labels = _labels(table.column(label_column), threshold, label_column)
    usable = pc.and_(pc.is_valid(labels), pc.not_equal(pc.utf8_trim_whitespace(texts), "")).to_numpy(
        zero_copy_only=False)
    texts = texts.filter(pa.array(usable)).to_pylist()
    names = labels.filter(pa.array(usable)).to_pylist()
    classes = sorted(set(names))
    if not names:
        raise UsageError(f"no rows with both a text and a label to train on ({table.num_rows} rows read)")
    if len(classes) < 2:
        raise UsageError(f"every usable row has the label '{classes[0]}': a classifier needs at least two classes")
    positive = _positive(positive, classes)

    order = np.random.default_rng(seed).permutation(len(names))
    n_valid = int(round(len(names) * valid_fraction))
    if valid_fraction > 0 and not 1 <= n_valid < len(names):
        raise UsageError(f"{len(names)} rows are too few to hold out {valid_fraction:.0%} for validation")
    valid, train = order[:n_valid], order[n_valid:]

    target = Path(output)
    if not target.parent.is_dir():
        raise UsageError(f"the output folder does not exist: {target.parent}")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        train_file = Path(tmp) / "train.txt"
        with open(train_file, "w", encoding="utf-8") as f:
            f.writelines(f"{LABEL_PREFIX}{names[i]} {texts[i]}\n" for i in train)
        try:
            model = fasttext.train_supervised(input=str(train_file), **settings.fasttext_args(seed))
        except RuntimeError as exc:  # fastText reports divergence as "Encountered NaN."
            raise UsageError(f"training failed: {exc} (a lower learning rate usually helps)") from None
        staged = Path(tmp) / "model"
        model.save_model(str(staged))
        metrics = _metrics(model, [texts[i] for i in valid], [names[i] for i in valid], positive)
        result = TrainedClassifier(
            model=str(target), labels=classes, positive=positive, text_column=text_column,
            label_column=label_column, threshold=threshold, valid_fraction=valid_fraction, seed=seed,
            settings=asdict(settings),
            counts={"rows": table.num_rows, "skipped": int(table.num_rows - len(names)),
                    "train": dict(sorted(Counter(names[i] for i in train).items())),
                    "valid": dict(sorted(Counter(names[i] for i in valid).items()))},
            metrics=metrics)
        staged_sidecar = Path(tmp) / "sidecar.json"
        staged_sidecar.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
        for path in (staged, staged_sidecar):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        os.replace(staged, target)
        os.replace(staged_sidecar, sidecar_path(target))
    return result


def _as_table(data: str | os.PathLike[str] | pa.Table | Iterable[Mapping[str, Any]]) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, str | os.PathLike):
        from datakit.io import read_table

        return read_table(data)
    return pa.Table.from_pylist([dict(row) for row in data])


def _labels(values: pa.ChunkedArray, threshold: float | None, column: str) -> pa.ChunkedArray:
    """Class names per row (null where unlabeled): numbers cut at `threshold`, booleans as good/bad, text as is
    (spaces become '_', since a fastText label is one word)."""
    kind = values.type
    if pa.types.is_null(kind):  # no row has a label
        return values.cast(pa.string())
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    if threshold is not None:
        if not numeric:
            raise UsageError(f"a threshold needs numeric labels, but column '{column}' holds {kind}")
        return pc.if_else(pc.greater_equal(values.cast(pa.float64()), threshold), "good", "bad")
    if numeric:
        raise UsageError(f"column '{column}' holds numbers ({kind}): give a threshold to split them into "
                         "good (at least the threshold) and bad")
    if pa.types.is_boolean(kind):
        return pc.if_else(values, "good", "bad")
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        cleaned = pc.replace_substring_regex(pc.utf8_trim_whitespace(values.cast(pa.string())), r"\s+", "_")
        return pc.if_else(pc.equal(cleaned, ""), None, cleaned)
    raise UsageError(f"column '{column}' holds {kind}; labels must be text, true/false, or numbers with a threshold")


def _positive(positive: str | None, classes: list[str]) -> str | None:
    if positive is not None:
        if positive not in classes:
            raise UsageError(f"the positive label '{positive}' is not among the labels: {', '.join(classes)}")
        return positive
    if DEFAULT_POSITIVE in classes:
        return DEFAULT_POSITIVE
    if len(classes) == 2:
        raise UsageError(f"name the positive label (one of {', '.join(classes)}): there is no '{DEFAULT_POSITIVE}'")
    return None


def _metrics(model: Any, texts: list[str], truth: list[str], positive: str | None) -> dict[str, float | None]:
    """Held-out accuracy, and precision and recall of the positive label (None where undefined)."""
    if not texts:
        return {"accuracy": None, "precision": None, "recall": None}
    predicted, _ = predict_top(model, pa.array(texts, pa.string()))
    gold = np.array(truth, dtype=object)
    metrics: dict[str, float | None] = {"accuracy": round(float((predicted == gold).mean()), 4)}
    if positive is not None:
        hits = int(((predicted == positive) & (gold == positive)).sum())
        said, real = int((predicted == positive).sum()), int((gold == positive).sum())
        metrics["precision"] = round(hits / said, 4) if said else None
        metrics["recall"] = round(hits / real, 4) if real else None
    return metrics
