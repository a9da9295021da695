"""LLM engines (vLLM, transformers, OpenAI-compatible servers), sentence embedders and reward models.

Importing this package is cheap: torch, vllm and transformers load only when a model does.
"""

from datakit.engines.base import (
    Completion,
    Engine,
    Generation,
    Message,
    Prompt,
    SamplingParams,
    encode_prompts,
    per_prompt,
    prompt_kind,
)
from datakit.engines.embedder import Embedder
from datakit.engines.loading import ENGINES, load_embedder, load_engine, load_reward_model
from datakit.engines.reward import RewardModel
from datakit.engines.spec import EmbedderSpec, ModelSpec, RewardSpec

__all__ = [
    "ENGINES",
    "Completion",
    "Embedder",
    "EmbedderSpec",
    "Engine",
    "Generation",
    "Message",
    "ModelSpec",
    "Prompt",
    "RewardModel",
    "RewardSpec",
    "SamplingParams",
    "encode_prompts",
    "load_embedder",
    "load_engine",
    "load_reward_model",
    "per_prompt",
    "prompt_kind",
]
