"""Model specifications: what a recipe says about a model, and the one place engines are loaded and shared.

A spec is plain data (it goes into step fingerprints and run records). `load_engine(spec)` builds the
engine once per process and hands the same object to every step that names the same spec.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from datakit.pipeline.params import param

EngineName = Literal["vllm", "transformers", "openai"]


@dataclass(frozen=True)
class ModelSpec:
    """A generation model and how to run it."""

    path: str = param(help="local model folder or Hub model id (with 'openai': the model name the server knows)")
    engine: EngineName = param("vllm", help="vllm (offline vllm.LLM), transformers (batched generate) or openai "
                                            "(an OpenAI-compatible server at base_url)")
    revision: str | None = param(None, help="Hub revision (branch, tag or commit) for reproducible runs")
    tokenizer: str | None = param(None, help="tokenizer folder or Hub id when it differs from the model's")
    dtype: str = param("auto", help="weights dtype: auto (the model's; float32 with vLLM on CPU), bfloat16, "
                                    "float16 or float32")
    max_model_len: int | None = param(None, help="longest prompt plus completion, in tokens (default: the model's)")
    seed: int = param(0, help="engine seed (requests carry their own seeds as well)")
    # vLLM
    tensor_parallel_size: int = param(1, help="vllm: GPUs to shard the model over")
    gpu_memory_utilization: float = param(0.9, help="vllm: share of GPU memory vLLM may take")
    kv_cache_gb: float | None = param(None, help="vllm: KV-cache size in GiB (default: vLLM's own sizing; "
                                                  "0.25 on CPU)")
    enforce_eager: bool | None = param(None, help="vllm: skip CUDA graphs / torch.compile (default: on for CPU)")
    enable_prefix_caching: bool = param(True, help="vllm: reuse the KV cache of shared prompt prefixes")
    # transformers
    device: str | None = param(None, help="transformers: torch device (default: cuda when present, else cpu)")
    batch_size: int = param(16, help="transformers: prompts per generate call; openai: ignored")
    # OpenAI-compatible servers
    base_url: str | None = param(None, help="openai: server URL, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = param("OPENAI_API_KEY", help="openai: environment variable holding the API key")
    concurrency: int = param(16, help="openai: requests in flight at once")
    timeout: float = param(600.0, help="openai: seconds before a request is abandoned and retried")
    max_retries: int = param(5, help="openai: retries of failed requests, with exponential backoff")
    options: dict[str, Any] = param(default_factory=dict,
                                    help="extra keyword arguments for the backend (vllm.LLM, from_pretrained, ...)")

    def __post_init__(self) -> None:
        if self.engine == "openai" and not self.base_url:
            raise ValueError("engine 'openai' needs base_url, e.g. http://127.0.0.1:8000/v1")
        if self.batch_size < 1 or self.concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")

    def key(self) -> tuple:
        """A hashable identity: two steps with equal specs share one loaded engine."""
        return ("engine", repr(sorted(dataclasses.asdict(self).items())))


@dataclass(frozen=True)
class EmbedderSpec:
    """A sentence-embedding model (sentence-transformers)."""

    path: str = param(help="local folder or Hub id of a sentence-transformers model")
    device: str | None = param(None, help="torch device (default: cuda when present, else cpu)")
    batch_size: int = param(256, help="texts per encode call")
    normalize: bool = param(True, help="L2-normalize embeddings (cosine similarity = dot product)")


@dataclass(frozen=True)
class RewardSpec:
    """A reward model: a sequence classifier with one output, scoring whole conversations."""

    path: str = param(help="local folder or Hub id of a *ForSequenceClassification model with one label")
    revision: str | None = param(None, help="Hub revision")
    device: str | None = param(None, help="torch device (default: cuda when present, else cpu)")
    dtype: str = param("auto", help="weights dtype: auto, bfloat16, float16 or float32")
    batch_size: int = param(16, help="conversations per forward pass")
    max_length: int = param(4096, help="conversations longer than this many tokens are truncated (from the left)")
    options: dict[str, Any] = param(default_factory=dict, help="extra keyword arguments for from_pretrained")
