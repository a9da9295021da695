"""Fixtures for the datakit.io tests: small helpers that write real files into tmp_path."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest


def _compress(data: bytes, compression: str | None) -> bytes:
    if compression is None:
        return data
    if compression == "gzip":
        return gzip.compress(data)
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, compression) as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


@pytest.fixture
def write_bytes(tmp_path: Path) -> Callable[..., Path]:
    """Write raw bytes (optionally gzip/zstd-compressed) to a file under tmp_path."""

    def write(name: str, data: bytes, compression: str | None = None) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_compress(data, compression))
        return path

    return write


@pytest.fixture
def write_jsonl(write_bytes: Callable[..., Path]) -> Callable[..., Path]:
    """Write rows as JSON Lines (one json.dumps per line, newline-terminated)."""

    def write(name: str, rows: list, compression: str | None = None) -> Path:
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
        return write_bytes(name, data, compression)

    return write


@pytest.fixture
def chat_rows() -> list[dict]:
    """A few SFT-style rows with a nested message list."""
    return [
        {
            "id": f"row-{i}",
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"answer {i} ✓"},
            ],
            "score": i * 0.5,
            "ok": i % 2 == 0,
        }
        for i in range(7)
    ]
