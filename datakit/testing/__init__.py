"""Offline test helpers: tiny random chat and reward models in real chat formats, a small sentence embedder, and a
local Hugging Face Hub server."""

from __future__ import annotations

from datakit.testing.families import FAMILIES
from datakit.testing.hub_server import HubServer
from datakit.testing.models import build_chat_model, build_reward_model, minilm_path

__all__ = ["FAMILIES", "HubServer", "build_chat_model", "build_reward_model", "minilm_path"]
