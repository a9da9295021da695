"""Reward models: sequence classifiers with one output that score whole conversations in padded batches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from datakit.engines.base import Message
from datakit.engines.loading import TRANSFORMERS_INSTALL, require, torch_device, torch_dtype
from datakit.engines.spec import RewardSpec
from datakit.errors import EngineError


class RewardModel:
    """A loaded `*ForSequenceClassification` model with one label; build it with `load_reward_model`."""

    def __init__(self, spec: RewardSpec) -> None:
        self._torch = require("torch", TRANSFORMERS_INSTALL)
        transformers = require("transformers", TRANSFORMERS_INSTALL)
        self.spec = spec
        self.device = torch_device(spec.device)
        try:
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(spec.path, revision=spec.revision)
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                spec.path, revision=spec.revision, dtype=torch_dtype(spec.dtype), **spec.options
            )
        except Exception as exc:  # missing files, bad config, size mismatch...: cannot load
            raise EngineError(f"cannot load reward model {spec.path!r}: {exc}") from exc
        if model.config.num_labels != 1:
            raise EngineError(f"{spec.path!r} has {model.config.num_labels} labels; a reward model has exactly one")
        if self._tokenizer.chat_template is None:
            raise EngineError(f"the tokenizer of {spec.path!r} has no chat template to render conversations with")
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        # The classifier pools at the last token that is not padding, found through the config's pad id.
        model.config.pad_token_id = self._tokenizer.pad_token_id
        self._model = model.to(self.device).eval()

    def score(self, conversations: Sequence[Sequence[Message]]) -> np.ndarray:
        """One float32 reward per conversation, in input order.

        Each conversation is rendered with the chat template (no generation prompt) and keeps its last
        `max_length` tokens, since the end (the response) is what is judged. Batches group conversations
        of similar length so little compute goes to padding.
        """
        if not conversations:
            return np.zeros(0, dtype=np.float32)
        torch = self._torch
        texts = self._tokenizer.apply_chat_template(
            [[dict(m) for m in conversation] for conversation in conversations], tokenize=False
        )
        # The template writes BOS itself when the model wants one.
        ids = [row[-self.spec.max_length :] for row in self._tokenizer(texts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        scores = np.empty(len(ids), dtype=np.float32)
        pad = self._tokenizer.pad_token_id
        for start in range(0, len(order), self.spec.batch_size):
            batch = order[start : start + self.spec.batch_size]
            width = max(len(ids[i]) for i in batch)
            # Right padding: positions of real tokens stay 0..len-1 without passing position ids.
            input_ids = torch.tensor([ids[i] + [pad] * (width - len(ids[i])) for i in batch], device=self.device)
            mask = torch.tensor([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in batch], device=self.device)
            with torch.inference_mode():
                logits = self._model(input_ids=input_ids, attention_mask=mask).logits
            scores[batch] = logits[:, 0].float().cpu().numpy()
        return scores
