"""fastText classifiers: the shipped language-id model's held-out accuracy, language_filter and quality_filter in
recipes with exact drop counts, and training classifiers from labeled rows (library side)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.curate.classifiers import FastTextSettings, train_classifier
from datakit.curate.classifiers._fasttext import langid_text, load_model, predict_top
from datakit.curate.classifiers.language import LANGID_MODEL
from datakit.errors import DatakitError, UsageError
from datakit.pipeline import run
from tests.pipeline.conftest import read_output, write_recipe

# Floors a little under the accuracy measured when the model was trained (see langid_training).
HELD_OUT_FLOOR = 0.88
IFEVAL_FLOOR = 0.97

# One unambiguous text per language, written for these tests.
SAMPLES = {
    "en": "The weather was lovely this morning, so we walked along the river before breakfast.",
    "de": "Gestern haben wir im Garten gearbeitet und danach zusammen einen Kuchen gebacken.",
    "fr": "Nous avons visité le musée pendant les vacances et nous avons beaucoup aimé les tableaux.",
    "es": "Mañana por la tarde vamos a comprar fruta fresca en el mercado del barrio.",
    "ru": "Вчера вечером мы долго гуляли по парку и разговаривали о новых книгах.",
    "zh": "我们明天早上一起去图书馆看书，然后在学校附近吃午饭。",
    "ja": "昨日は友達と一緒に公園へ行って、桜の写真をたくさん撮りました。",
    "ar": "ذهبنا إلى السوق في الصباح واشترينا الخبز والفواكه الطازجة للعائلة.",
    "hi": "कल शाम हम अपने दोस्तों के साथ बाज़ार गए और बहुत सारी किताबें खरीदीं।",
}


def test_shipped_model_is_small_and_meets_its_held_out_floors():
    from datakit.curate.classifiers.langid_training import LANGUAGES, corpus, ifeval_texts

    assert LANGID_MODEL.stat().st_size < 2_000_000
    model = load_model(LANGID_MODEL)
    assert sorted(label.removeprefix("__label__") for label in model.get_labels()) == sorted(LANGUAGES.values())
    # Pseudo-sentences from held-out words only (no word of them was in the training text).
    texts, labels = corpus(8, seed=99, held_out=True)
    predicted, _ = predict_top(model, langid_text(pa.array(texts)))
    assert len(texts) == 8 * len(LANGUAGES)
    assert float(np.mean(predicted == np.array(labels, dtype=object))) >= HELD_OUT_FLOOR
    # Real text from another source: GPT-4 responses, English or the language their prompt asked for.
    real, real_labels, excluded = ifeval_texts()
    assert len(real) >= 500 and len(set(real_labels)) >= 10 and len(excluded) < 20
    predicted, _ = predict_top(model, langid_text(pa.array(real)))
    assert float(np.mean(predicted == np.array(real_labels, dtype=object))) >= IFEVAL_FLOOR


def test_language_id_text_keeps_letters_only():
    assert langid_text(pa.array(["Hello,\nWorld! 42", None, "1 + 2"])).to_pylist() == ["hello world", "", ""]


def run_steps(tmp_path: Path, rows: list[dict[str, Any]], steps: list[dict[str, Any]], name: str = "r",
              shard_rows: int = 5) -> tuple[pa.Table, dict[str, dict[str, Any]]]:
    data = tmp_path / f"{name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    recipe = write_recipe(tmp_path / f"{name}.yaml", [
        {"id": "load", "uses": "read", "with": {"path": str(data)}}, *steps,
        {"id": "save", "uses": "write"},
    ], name=name, output=str(tmp_path / name), shard_rows=shard_rows)
    result = run(recipe)
    return read_output(result.output()), {s["id"]: s for s in result.summary["steps"]}


def language_rows() -> list[dict[str, Any]]:
    rows = [{"id": i, "text": text, "lang": lang} for i, (lang, text) in enumerate(SAMPLES.items())]
    rows += [{"id": 100, "text": "12345 -- 678!", "lang": None}, {"id": 101, "text": "", "lang": None},
             {"id": 102, "text": None, "lang": None}]
    return rows


def test_language_filter_keeps_wanted_languages_with_exact_reasons(tmp_path):
    out, steps = run_steps(tmp_path, language_rows(), [
        {"id": "lang", "uses": "language_filter",
         "with": {"languages": ["en", "de", "zh"], "language_column": "language", "score_column": "language_score"}},
    ])
    assert steps["lang"]["in"] == 12 and steps["lang"]["out"] == 3
    assert steps["lang"]["dropped"] == {"language": 6, "empty": 3}
    assert sorted(out.column("language").to_pylist()) == ["de", "en", "zh"]
    assert out.column("language").to_pylist() == out.column("lang").to_pylist()
    assert all(0.5 <= s <= 1.0 for s in out.column("language_score").to_pylist())


def test_language_filter_labels_every_language_and_thresholds_exactly(tmp_path):
    rows = language_rows()
    out, steps = run_steps(tmp_path, rows, [
        {"id": "lang", "uses": "language_filter",
         "with": {"languages": None, "min_score": 0.0, "language_column": "language", "score_column": "p"}},
    ], name="all")
    assert steps["lang"]["dropped"] == {"empty": 3} and out.num_rows == 9
    assert out.column("language").to_pylist() == out.column("lang").to_pylist()
    scores = np.array(out.column("p").to_pylist())
    cut = float(np.median(np.unique(scores)))  # a threshold that some rows pass and some do not
    below = int((scores < cut).sum())
    assert 1 <= below < 9
    out, steps = run_steps(tmp_path, rows, [
        {"id": "lang", "uses": "language_filter", "with": {"languages": list(SAMPLES), "min_score": cut}},
    ], name="cut")
    assert steps["lang"]["dropped"] == {"empty": 3, "low_confidence": below} and out.num_rows == 9 - below


def test_language_filter_reads_assistant_turns(tmp_path):
    rows = [{"messages": [{"role": "user", "content": SAMPLES["en"]}, {"role": "assistant", "content": SAMPLES[lang]}]}
            for lang in ("en", "fr", "ru")]
    rows.append({"messages": [{"role": "user", "content": SAMPLES["en"]}]})
    out, steps = run_steps(tmp_path, rows, [
        {"id": "lang", "uses": "language_filter", "with": {"column": "messages", "languages": ["fr"]}},
    ], name="chat")
    assert steps["lang"]["dropped"] == {"language": 2, "empty": 1}
    assert out.column("messages").to_pylist()[0][1]["content"] == SAMPLES["fr"]


def test_language_filter_refuses_codes_the_model_does_not_know(tmp_path):
    with pytest.raises(DatakitError, match="does not know 'english'"):
        run_steps(tmp_path, language_rows(), [
            {"id": "lang", "uses": "language_filter", "with": {"languages": ["english"]}}], name="bad")


# Synthetic quality data: 'good' texts are varied, well-formed sentences; 'bad' ones are keyword spam and
# boilerplate. The two share no vocabulary, so a fastText classifier separates them.
GOOD_WORDS = ("the river city history science careful method explains because results students library "
              "measured evidence several years later researchers found that water levels changed slowly").split()
BAD_WORDS = "click here buy now cheap free win prize subscribe deal offer limited !!! $$$ best casino".split()


def quality_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        good = i % 2 == 0
        words = GOOD_WORDS if good else BAD_WORDS
        text = " ".join(rng.choice(words) for _ in range(rng.randint(8, 20)))
        text = text.capitalize() + "." if good else text.upper()
        rows.append({"id": i, "text": text, "label": "good" if good else "bad",
                     "reward": round(rng.uniform(0.6, 1.0) if good else rng.uniform(-1.0, 0.4), 3)})
    return rows


SMALL = FastTextSettings(epochs=25, dim=16, bucket=10_000)


def test_train_classifier_holds_out_rows_and_writes_model_and_sidecar(tmp_path):
    model = tmp_path / "quality.bin"
    result = train_classifier(pa.Table.from_pylist(quality_rows(300)), model, valid_fraction=0.2, seed=1,
                              settings=SMALL)
    assert result.labels == ["bad", "good"] and result.positive == "good"
    assert sum(result.counts["valid"].values()) == 60 and sum(result.counts["train"].values()) == 240
    assert result.metrics == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0}
    sidecar = json.loads((tmp_path / "quality.bin.json").read_text())
    assert sidecar["counts"] == result.counts and sidecar["settings"]["dim"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quality.bin", "quality.bin.json"]  # no temp files left
    # The same seed gives the same split (fastText's threads make the weights vary a little).
    again = train_classifier(quality_rows(300), tmp_path / "again.bin", valid_fraction=0.2, seed=1, settings=SMALL)
    assert again.counts == result.counts and again.metrics == result.metrics


def test_numeric_scores_become_good_and_bad_by_threshold(tmp_path):
    rows = [{"text": r["text"], "score": r["reward"]} for r in quality_rows(200)]
    result = train_classifier(rows, tmp_path / "m.bin", label_column="score", threshold=0.5, settings=SMALL)
    assert result.counts["train"]["good"] + result.counts["valid"]["good"] == 100
    assert result.metrics["accuracy"] == 1.0


@pytest.mark.parametrize(("rows", "kwargs", "message"), [
    ([], {}, "text column 'text' is not in the data"),
    ([{"text": "a", "label": None}], {}, "no rows with both a text and a label"),
    ([{"text": "a", "label": "good"}, {"text": "b", "label": "good"}], {}, "at least two classes"),
    ([{"text": "a", "label": 0.3}, {"text": "b", "label": 0.9}], {}, "give a threshold"),
    ([{"text": "a", "label": "x"}, {"text": "b", "label": "good"}], {"threshold": 0.5}, "needs numeric labels"),
    ([{"text": "a", "label": "yes"}, {"text": "b", "label": "no"}], {}, "name the positive label"),
    ([{"text": "a", "label": "yes"}, {"text": "b", "label": "no"}], {"positive": "ok"}, "'ok' is not among"),
    ([{"text": "a", "label": "yes"}, {"text": "b", "label": "no"}], {"label_column": "y"}, "label column 'y'"),
])
def test_bad_training_input_is_refused_before_anything_is_written(tmp_path, rows, kwargs, message):
    with pytest.raises(UsageError, match=message):
        train_classifier(pa.Table.from_pylist(rows), tmp_path / "m.bin", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_quality_filter_checks_its_model_and_label(tmp_path):
    model = tmp_path / "q.bin"
    train_classifier(quality_rows(100), model, label_column="label", positive="bad", settings=SMALL)
    rows = quality_rows(10, seed=5)
    # The sidecar names 'bad' as positive here, so by default the step keeps the spam.
    out, steps = run_steps(tmp_path, rows, [{"id": "q", "uses": "quality_filter", "with": {"model": str(model)}}])
    assert steps["q"]["dropped"] == {"low_quality": 5} and set(out.column("label").to_pylist()) == {"bad"}
    with pytest.raises(DatakitError, match="has no label 'great'"):
        run_steps(tmp_path, rows, [{"id": "q", "uses": "quality_filter",
                                    "with": {"model": str(model), "label": "great"}}], name="l")
    with pytest.raises(DatakitError, match="model file not found"):
        run_steps(tmp_path, rows, [{"id": "q", "uses": "quality_filter",
                                    "with": {"model": str(tmp_path / "missing.bin")}}], name="m")
