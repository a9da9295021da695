"""Kill a real `datakit run` with SIGKILL at a chosen point, resume it, and count lost and duplicated rows.

Shared by the kill/resume tests and the stress script in tests/benchmarks/stress_resume.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from tests.conftest import REPO
from tests.pipeline.conftest import read_output, write_input, write_recipe

SERVICE = "tests.pipeline.service_steps:Service"


def kill_recipe(directory: Path, rows: int = 2400, shard_rows: int = 60, delay: float = 0.01) -> Path:
    """A recipe touching every kind of step: a stored (impure) service step, pure steps recomputed
    across passes, two global steps (dedup, shuffle) and a sink."""
    data = write_input(directory, rows)
    steps = [
        {"id": "load", "uses": "read", "with": {"path": str(data)}},
        {"id": "keep", "uses": "filter", "with": {"where": "score >= 0.05"}},
        {"id": "ask", "uses": SERVICE, "with": {"delay": delay}},
        {"id": "dedup", "uses": "dedup", "with": {"columns": ["text"]}},
        {"id": "pick", "uses": "sample", "with": {"fraction": 0.9}},
        {"id": "mix", "uses": "shuffle"},
        {"id": "more", "uses": "derive", "with": {"columns": {"n": "length(answer)"}}},
        {"id": "save", "uses": "write"},
    ]
    return write_recipe(directory / "kill.yaml", steps, name="kill", shard_rows=shard_rows, seed=11, workers=2,
                        output=str(directory / "run"))


def commits(run_dir: Path) -> int:
    """Manifest entries written so far: the run's progress, in shards."""
    steps = run_dir / "steps"
    if not steps.is_dir():
        return 0
    return sum(1 for _ in steps.glob("*/*/entries/*.json")) + sum(1 for _ in steps.glob("*/*/build/*.json"))


def start(recipe: Path, run_dir: Path, resume: bool) -> subprocess.Popen:
    command = [sys.executable, "-m", "datakit", "run", str(recipe), "--set", f"output={run_dir}", "--no-progress"]
    if resume:
        command.append("--resume")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_after(process: subprocess.Popen, run_dir: Path, at_commits: int, extra_seconds: float) -> bool:
    """SIGKILL the run once it has made `at_commits` commits (plus a little time); False if it ended first."""
    while process.poll() is None and commits(run_dir) < at_commits:
        time.sleep(0.002)
    time.sleep(extra_seconds)
    if process.poll() is not None:
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return True


@dataclass
class Trial:
    killed: list[int]  # commits made when each kill hit (-1 where the run had already ended)
    lost: int
    duplicated: int
    identical: bool  # same rows in the same order as the uninterrupted run


def compare(expected: pa.Table, got: pa.Table) -> tuple[int, int]:
    """Rows lost and rows duplicated, by id."""
    want, have = Counter(expected.column("id").to_pylist()), Counter(got.column("id").to_pylist())
    lost = sum((want - have).values())
    duplicated = sum((have - want).values())
    return lost, duplicated


def trial(recipe: Path, run_dir: Path, expected: pa.Table, kill_points: list[tuple[int, float]]) -> Trial:
    """Start, kill at each point (a commit count and a delay), resume each time, then finish and compare."""
    killed = []
    resume = False
    for at_commits, extra in kill_points:
        process = start(recipe, run_dir, resume)
        killed.append(at_commits if kill_after(process, run_dir, at_commits, extra) else -1)
        resume = True
    final = start(recipe, run_dir, resume=True)
    _, err = final.communicate(timeout=300)
    if final.returncode != 0:
        raise RuntimeError(f"resumed run failed ({final.returncode}): {err.decode()[-2000:]}")
    got = read_output(run_dir / "output" / "save")
    lost, duplicated = compare(expected, got)
    return Trial(killed, lost, duplicated, got.equals(expected))
