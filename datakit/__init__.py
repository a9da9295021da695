"""datakit: build alignment datasets for LLMs on streaming Arrow pipelines.

Importing this package stays cheap: heavy libraries (torch, vllm, ray, transformers) are only
imported inside the functions that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
