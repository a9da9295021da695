"""The session's tiny models for the labeling tests: the same build (and so the same shared engines) as
tests/generate uses, whichever of the two asks first."""

from __future__ import annotations

import pytest

from tests.generate.conftest import TinyModels, build_tiny_models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return build_tiny_models(tmp_path_factory)
