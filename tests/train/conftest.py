"""Shared by the training tests: a tiny chat model built once per session, the example rows, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from datakit.cli import main
from tests.conftest import REPO

EXAMPLES = REPO / "datakit" / "examples"
# Two optimizer steps on batches of two, every step logged: seconds per run on a CPU.
FAST = ("--set", "max_steps=2", "--set", "logging_steps=1", "--set", "per_device_train_batch_size=2")


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("trl")
    from datakit.testing import build_chat_model

    return build_chat_model(tmp_path_factory.mktemp("train-models") / "tiny-chat", "llama3")


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run `datakit ARGV...` in-process; its exit code, stdout and stderr."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def metrics(output: Path) -> list[dict[str, Any]]:
    """The log history a training run wrote."""
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def losses(output: Path) -> list[float]:
    """Every logged loss (per step and the run's mean), all checked finite."""
    found = [entry[key] for entry in metrics(output) for key in ("loss", "train_loss") if key in entry]
    assert found and all(math.isfinite(v) for v in found), found
    return found


def provenance(output: Path) -> dict[str, Any]:
    return json.loads((output / "datakit-train.json").read_text(encoding="utf-8"))
