"""The sentence embedder (real MiniLM) and the reward scorer (tiny random classifier)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datakit.engines import EmbedderSpec, RewardSpec, load_embedder, load_reward_model
from datakit.errors import EngineError


def test_embeddings_are_normalized_float32_rows_and_semantic(minilm: Path) -> None:
    spec = EmbedderSpec(path=str(minilm), device="cpu", batch_size=2)
    embedder = load_embedder(spec)
    assert load_embedder(spec) is embedder
    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today.", "Hi"]
    vectors = embedder.embed(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (4, embedder.dim) and embedder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    np.testing.assert_allclose(embedder.embed(texts[2:3])[0], vectors[2], atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def conversation(prompt: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def test_reward_scores_keep_input_order_across_batches(reward_model: Path) -> None:
    spec = RewardSpec(path=str(reward_model), device="cpu", batch_size=2)
    scorer = load_reward_model(spec)
    assert load_reward_model(spec) is scorer
    conversations = [
        conversation("Write a long poem about the sea and the sky and the wind.", "The sea is wide, the sky is high."),
        conversation("Hi", "Hello!"),
        conversation("What is two plus two?", "Four."),
        conversation("Name a color.", "Blue, a calm and deep color."),
        conversation("Hi", "Hello!"),
    ]
    scores = scorer.score(conversations)
    assert scores.dtype == np.float32 and scores.shape == (5,)
    assert np.all(np.isfinite(scores))
    assert scores[1] == pytest.approx(scores[4], abs=1e-5)
    alone = np.array([scorer.score([c])[0] for c in conversations])
    np.testing.assert_allclose(scores, alone, atol=1e-4)
    assert len(set(np.round(scores, 4))) > 2  # the random model does tell conversations apart
    assert scorer.score([]).shape == (0,)


def test_reward_truncates_from_the_left(reward_model: Path) -> None:
    scorer = load_reward_model(RewardSpec(path=str(reward_model), device="cpu", max_length=12))
    answer = "The sea is wide and the sky is high above the waves."
    short, long = scorer.score([conversation("Hi", answer), conversation("Tell me a story " * 20, answer)])
    assert short == pytest.approx(long, abs=1e-5)  # both keep the same last 12 tokens: the answer's end


def test_classifier_with_several_labels_is_rejected(tmp_path: Path, reward_model: Path) -> None:
    import shutil

    from transformers import AutoModelForSequenceClassification

    folder = shutil.copytree(reward_model, tmp_path / "three-labels")
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3, ignore_mismatched_sizes=True)
    model.save_pretrained(folder)
    with pytest.raises(EngineError, match="3 labels"):
        load_reward_model(RewardSpec(path=str(folder), device="cpu"))


def test_unloadable_reward_model_is_engine_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="cannot load"):
        load_reward_model(RewardSpec(path=str(tmp_path / "missing")))


def test_tokenizer_without_pad_token_pads_with_eos(tmp_path: Path, reward_model: Path) -> None:
    import json
    import shutil

    folder = shutil.copytree(reward_model, tmp_path / "no-pad")
    for name, key in (("tokenizer_config.json", "pad_token"), ("config.json", "pad_token_id")):
        settings = json.loads((folder / name).read_text())
        settings.pop(key, None)
        (folder / name).write_text(json.dumps(settings))
    scorer = load_reward_model(RewardSpec(path=str(folder), device="cpu", batch_size=3))
    assert scorer._tokenizer.pad_token_id == scorer._tokenizer.eos_token_id
    conversations = [conversation("Hi", "Hello!"), conversation("Name a color.", "Blue, a calm and deep color.")]
    together = scorer.score(conversations)
    np.testing.assert_allclose(together, [scorer.score([c])[0] for c in conversations], atol=1e-4)
