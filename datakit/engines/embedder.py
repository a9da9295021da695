"""Sentence embeddings with sentence-transformers, for semantic dedup and diversity measures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from datakit.engines.loading import SENTENCE_TRANSFORMERS_INSTALL, require
from datakit.engines.spec import EmbedderSpec
from datakit.errors import EngineError


class Embedder:
    """A loaded sentence-transformers model; build it with `datakit.engines.load_embedder`."""

    def __init__(self, spec: EmbedderSpec) -> None:
        st = require("sentence_transformers", SENTENCE_TRANSFORMERS_INSTALL)
        self.spec = spec
        try:
            # device None lets sentence-transformers pick cuda when present, as the spec promises
            self._model = st.SentenceTransformer(spec.path, device=spec.device)
        except Exception as exc:  # missing files, bad config, size mismatch...: cannot load
            raise EngineError(f"cannot load sentence embedder {spec.path!r}: {exc}") from exc
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise EngineError(f"{spec.path!r} does not say its embedding dimension; is it a sentence embedder?")
        self._dim = int(dim)

    @property
    def dim(self) -> int:
        """Length of each embedding vector."""
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per text (n × dim), L2-normalized when the spec says so."""
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.spec.batch_size,
            normalize_embeddings=self.spec.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
