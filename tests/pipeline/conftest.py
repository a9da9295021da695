"""Helpers for pipeline tests: synthetic rows with planted duplicates, and recipe files."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tests.conftest import write_jsonl

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def make_rows(n: int, seed: int = 0, duplicate_share: float = 0.3) -> list[dict[str, Any]]:
    """Rows with a unique id, a text (some repeating an earlier one), a score and a language."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        if rows and rng.random() < duplicate_share:
            text = rng.choice(rows)["text"]
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        rows.append({"id": i, "text": text, "score": round(rng.random(), 4), "lang": rng.choice(["en", "en", "fr"])})
    return rows


def write_input(directory: Path, n: int = 1000, seed: int = 0, name: str = "input.jsonl") -> Path:
    return write_jsonl(directory / name, make_rows(n, seed))


def write_recipe(path: Path, steps: list[dict[str, Any]], **settings: Any) -> Path:
    """Write a recipe YAML with the given steps and top-level settings."""
    document = {**settings, "steps": steps}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def read_output(folder: Path) -> pa.Table:
    """All published Parquet files of a sink folder, in order, as one table."""
    files = sorted(folder.glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else pa.table({})
