"""Shared test fixtures: paths to the bundled test data and a helper to write JSON Lines files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
REPO = TESTS.parent


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSON Lines (one object per line) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="session")
def trl_zen() -> Path:
    return DATA / "trl_zen"
