"""The `language_filter` step: keep rows written in the wanted languages, by a fastText language-id model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.curate.classifiers._fasttext import (
    langid_text,
    load_model,
    model_digest,
    model_labels,
    predict_top,
    set_column,
)
from datakit.curate.text import select_text
from datakit.errors import RecipeError
from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import MapResult, MapStep

LANGID_MODEL = Path(__file__).with_name("langid.ftz")


@register("language_filter")
class LanguageFilter(MapStep):
    """Keep rows whose text is in one of `languages` with probability at least `min_score`.

    The default model ships with datakit (about 1 MB, 42 languages; see `langid_training` for how it was
    made and how accurate it is); any fastText language-id model with `__label__xx` labels, such as
    Facebook's lid.176.bin, can be named instead. Text is lowercased and reduced to its letters before
    prediction. Drop reasons: `language` (another language), `low_confidence` (a wanted language, but below
    `min_score`), `empty` (no letters to judge). The default `min_score` of 0.5 is CCNet's threshold
    (Wenzek et al., 2020), which Dolma's language filter also uses.
    """

    pure = True
    thread_safe = True  # fastText's predict keeps its working state per call

    @dataclass(frozen=True)
    class Params:
        languages: list[str] | None = param(default_factory=lambda: ["en"],
                                            help="keep rows in these languages (ISO 639-1 codes, e.g. [en, de]); "
                                                 "null keeps every language and only labels rows")
        min_score: float = param(0.5, help="least probability of the predicted language to keep a row")
        column: str = param("text", help="text column, or a column of chat messages")
        role: str = param("assistant", help="for chat messages: whose turns to read (joined by a blank line)")
        model: str | None = param(None, help="fastText language-id model file (default: the one shipped)")
        language_column: str | None = param(None, help="write the predicted language code here")
        score_column: str | None = param(None, help="write the predicted language's probability here")

        def __post_init__(self) -> None:
            if not 0.0 <= self.min_score <= 1.0:
                raise ValueError(f"min_score must be between 0 and 1, got {self.min_score}")
            if self.languages is not None and not self.languages:
                raise ValueError("languages is empty: name at least one language, or null to keep every language")

    @property
    def model_path(self) -> Path:
        return Path(self.params.model) if self.params.model else LANGID_MODEL

    def version(self) -> str:
        return model_digest(self.model_path, self.context.step_id)

    def setup(self) -> None:
        self.model = load_model(self.model_path)
        if self.params.languages is not None:
            known = model_labels(self.model)
            unknown = [code for code in self.params.languages if code not in known]
            if unknown:
                raise RecipeError(f"the language-id model does not know {', '.join(map(repr, unknown))}; "
                                  f"it knows: {', '.join(sorted(known))}",
                                  field=f"steps.{self.context.step_id}.with.languages")

    def process(self, batch: pa.RecordBatch) -> MapResult:
        p = self.params
        text = langid_text(select_text(batch, p.column, p.role, self.context.step_id).to_arrow())
        empty = pc.equal(text, "").to_numpy(zero_copy_only=False)
        language = np.full(batch.num_rows, None, dtype=object)
        score = np.full(batch.num_rows, np.nan)
        if (~empty).any():
            language[~empty], score[~empty] = predict_top(self.model, text.filter(pa.array(~empty)))
        wanted = ~empty if p.languages is None else ~empty & np.isin(language, p.languages)
        confident = wanted & (score >= p.min_score)
        dropped = {"empty": int(empty.sum()), "language": int((~empty & ~wanted).sum()),
                   "low_confidence": int((wanted & ~confident).sum())}
        out = batch
        if p.language_column is not None:
            out = set_column(out, p.language_column, pa.array(language, pa.string()))
        if p.score_column is not None:
            out = set_column(out, p.score_column, pa.array(score, pa.float64(), mask=empty))
        return MapResult(out.filter(pa.array(confident)), dropped={k: v for k, v in dropped.items() if v})

