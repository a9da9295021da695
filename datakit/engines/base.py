"""The generation protocol every engine speaks: prompts in, completions with tokens and finish reasons out.

A prompt is one of three things:
- a `str`: raw text, tokenized as is (special tokens in it are recognized);
- a list of `int`: token ids, sent unchanged (how Magpie's pre-query templates avoid a second BOS);
- a list of `{"role", "content"}` mappings: a conversation, rendered with the model's chat template
  and a generation prompt.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Message = Mapping[str, Any]
Prompt = str | Sequence[int] | Sequence[Message]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. Defaults follow vLLM's; `seed` makes a request reproducible on every engine that honours it.

    At most one of `json_schema`, `choice` and `regex` constrains the output (structured output).
    `logprobs=k` returns the log-probability of every sampled token (k top alternatives are not kept).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    repetition_penalty: float = 1.0
    logprobs: int | None = None
    json_schema: Mapping[str, Any] | None = None
    choice: tuple[str, ...] | None = None
    regex: str | None = None
    skip_special_tokens: bool = True

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        constraints = [c for c in (self.json_schema, self.choice, self.regex) if c is not None]
        if len(constraints) > 1:
            raise ValueError("use at most one of json_schema, choice and regex")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one option")

    @property
    def structured(self) -> bool:
        """Whether the output is constrained by a JSON schema, a choice list or a regex."""
        return self.json_schema is not None or self.choice is not None or self.regex is not None


@dataclass
class Completion:
    """One sampled continuation.

    `finish_reason` is "stop" (end of sequence, a stop string or a stop token) or "length" (max_tokens).
    `stop_reason` is the stop string or stop token id that ended it, or None (EOS, or length).
    `logprobs` holds one log-probability per token in `token_ids` when asked for.
    """

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    stop_reason: str | int | None = None
    logprobs: list[float] | None = None


@dataclass
class Generation:
    """The completions for one prompt (`n` of them) and the prompt's length in tokens."""

    prompt_tokens: int
    completions: list[Completion] = field(default_factory=list)

    @property
    def completion_tokens(self) -> int:
        return sum(len(c.token_ids) for c in self.completions)


class Engine(ABC):
    """A loaded model that generates in batches. Engines are built by `datakit.engines.load_engine`.

    `generate` takes every prompt of a batch at once so the backend can schedule them together
    (continuous batching in vLLM, padded batches in transformers, concurrent requests over HTTP).
    `params` is one SamplingParams for all prompts or one per prompt. Results come back in prompt order.
    """

    name: ClassVar[str] = ""

    @abstractmethod
    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[Generation]:
        """Generate for every prompt; raises EngineError for unusable requests, TransientError for retryable ones."""

    @property
    @abstractmethod
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer (chat template, special tokens); needed for Magpie and token prompts."""

    def close(self) -> None:
        """Free the model's memory and any child processes or connections."""


def per_prompt(params: SamplingParams | Sequence[SamplingParams], count: int) -> list[SamplingParams]:
    """One SamplingParams per prompt, checking that a sequence has the right length."""
    if isinstance(params, SamplingParams):
        return [params] * count
    params = list(params)
    if len(params) != count:
        raise ValueError(f"got {len(params)} sampling parameter sets for {count} prompts")
    return params


def prompt_kind(prompt: Prompt) -> Literal["text", "tokens", "messages"]:
    """Which of the three prompt forms `prompt` is; raises ValueError for anything else."""
    if isinstance(prompt, str):
        return "text"
    if isinstance(prompt, Sequence) and prompt and all(isinstance(t, int) for t in prompt):
        return "tokens"
    if isinstance(prompt, Sequence) and prompt and all(isinstance(m, Mapping) for m in prompt):
        return "messages"
    raise ValueError("a prompt is a string, a non-empty list of token ids, or a non-empty list of messages")


def encode_prompts(tokenizer: Any, prompts: Sequence[Prompt]) -> list[list[int]]:
    """Token ids for each prompt, as vLLM would see them.

    Text goes through the tokenizer with its special tokens (e.g. BOS); token ids pass unchanged; conversations
    are rendered with the chat template and a generation prompt and tokenized without adding special tokens,
    since the template writes BOS itself (adding it again would double it). Conversations are rendered in one
    batched call.
    """
    ids: list[list[int] | None] = [None] * len(prompts)
    texts: list[int] = []
    chats: list[int] = []
    for i, prompt in enumerate(prompts):
        kind = prompt_kind(prompt)
        if kind == "tokens":
            ids[i] = list(prompt)  # type: ignore[arg-type]
        else:
            (texts if kind == "text" else chats).append(i)
    if texts:
        encoded = tokenizer([prompts[i] for i in texts])["input_ids"]
        for i, row in zip(texts, encoded):
            ids[i] = row
    if chats:
        conversations = [[dict(m) for m in prompts[i]] for i in chats]  # type: ignore[union-attr]
        encoded = tokenizer.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for i, row in zip(chats, encoded):
            ids[i] = row
    return ids  # type: ignore[return-value]
