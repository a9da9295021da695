"""`import datakit` stays light: no deep-learning or cluster libraries are loaded by it or by the CLI's validate path."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["torch", "vllm", "ray", "transformers", "trl", "datasets", "polars"]


def test_import_datakit_loads_no_heavy_library():
    code = (
        "import sys, datakit, datakit.records, datakit.io, datakit.cli, datakit.pipeline\n"
        "datakit.pipeline.available()\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
