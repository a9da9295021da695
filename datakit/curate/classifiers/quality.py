"""The `quality_filter` step: keep rows that a user-trained fastText quality classifier rates good enough."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.curate.classifiers._fasttext import (
    load_model,
    model_digest,
    model_labels,
    one_line,
    predict_label,
    set_column,
)
from datakit.curate.text import select_text
from datakit.errors import RecipeError
from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import MapResult, MapStep

DEFAULT_POSITIVE = "good"


def sidecar_path(model: str | Path) -> Path:
    """Where `datakit classifier train` writes what it knows about a model: next to it, with '.json' added."""
    model = Path(model)
    return model.with_name(model.name + ".json")


@register("quality_filter")
class QualityFilter(MapStep):
    """Keep rows that a fastText quality classifier rates good (probability of the positive label >= `min_score`).

    The others drop as `low_quality`, and rows with no text to judge as `empty`.

    The model is a fastText classifier, typically trained with `datakit classifier train` on rows labeled
    good/bad (or by a reward or judge score and a threshold), in the spirit of the fastText quality filters of
    DCLM (Li et al., 2024). The default `min_score` of 0.5 keeps rows the classifier calls positive rather than
    negative; raise it to keep fewer, better rows. Line breaks become spaces before prediction, as in training.
    """

    pure = True
    thread_safe = True  # fastText's predict keeps its working state per call

    @dataclass(frozen=True)
    class Params:
        model: str = param(help="fastText classifier file (.bin or .ftz), e.g. from 'datakit classifier train'")
        label: str | None = param(None, help="the positive label (default: the one recorded by 'datakit "
                                             "classifier train' in MODEL.json, else 'good')")
        min_score: float = param(0.5, help="least probability of the positive label to keep a row")
        column: str = param("text", help="text column, or a column of chat messages")
        role: str = param("assistant", help="for chat messages: whose turns to read (joined by a blank line)")
        score_column: str | None = param(None, help="write the positive label's probability here")

        def __post_init__(self) -> None:
            if not 0.0 <= self.min_score <= 1.0:
                raise ValueError(f"min_score must be between 0 and 1, got {self.min_score}")

    def version(self) -> str:
        return model_digest(self.params.model, self.context.step_id)

    def setup(self) -> None:
        self.model = load_model(self.params.model)
        self.label = self.params.label or _recorded_positive(self.params.model) or DEFAULT_POSITIVE
        known = model_labels(self.model)
        if self.label not in known:
            raise RecipeError(f"the classifier {self.params.model} has no label '{self.label}'; its labels: "
                              f"{', '.join(known)} (name the positive one with 'label')",
                              field=f"steps.{self.context.step_id}.with.label")

    def process(self, batch: pa.RecordBatch) -> MapResult:
        p = self.params
        text = one_line(select_text(batch, p.column, p.role, self.context.step_id).to_arrow())
        scores = predict_label(self.model, text, self.label)
        empty = pc.equal(pc.utf8_trim_whitespace(text), "").to_numpy(zero_copy_only=False)
        scores[empty] = np.nan  # nothing to judge: dropped as empty, not scored
        keep = ~empty & (scores >= p.min_score)
        out = batch
        if p.score_column is not None:
            out = set_column(out, p.score_column, pa.array(scores, pa.float64(), from_pandas=True))
        dropped = {"empty": int(empty.sum()), "low_quality": int(np.count_nonzero(~keep & ~empty))}
        return MapResult(out.filter(pa.array(keep)), dropped={k: v for k, v in dropped.items() if v})


def _recorded_positive(model: str) -> str | None:
    path = sidecar_path(model)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("positive")
    except (OSError, ValueError, AttributeError):
        return None
