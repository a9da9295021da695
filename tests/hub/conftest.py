"""Shared by the publishing tests: a real run of the demo recipe, and the CLI called in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit.cli import main
from datakit.pipeline import run
from tests.conftest import REPO


def run_demo(directory: Path, *overrides: str) -> Path:
    """Run the bundled demo recipe into `directory` and return the run directory."""
    examples = REPO / "datakit" / "examples" / "sft.jsonl"
    result = run(REPO / "pipelines" / "demo.yaml", [f"output={directory}", f"steps.load.with.path={examples}",
                                                    *overrides])
    return result.run_dir


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    return run_demo(tmp_path_factory.mktemp("runs") / "demo")


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run `datakit ARGV...`; its exit code, stdout and stderr."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
