"""Stress test for exactly-once: kill a real `datakit run` with SIGKILL at random points, resume, repeat.

Each trial kills the run once or twice (the second time while it resumes) at a random number of
committed shards plus a random delay, then resumes it to the end and compares the published rows
with an uninterrupted run: rows lost, rows duplicated, and whether the output is identical.

    python tests/benchmarks/stress_resume.py [--trials 20] [--seed 0] [--rows 2400] [--shard-rows 60]

Exits 1 if any trial lost or duplicated a row.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from datakit.pipeline import run  # noqa: E402
from tests.pipeline.conftest import read_output  # noqa: E402
from tests.pipeline.killing import commits, kill_recipe, trial  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=2400)
    parser.add_argument("--shard-rows", type=int, default=60)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        base = Path(temp)
        recipe = kill_recipe(base, rows=args.rows, shard_rows=args.shard_rows)
        started = time.perf_counter()
        expected = read_output(run(recipe).output())
        total = commits(base / "run")
        print(f"uninterrupted run: {expected.num_rows:,} rows out, {total} commits, "
              f"{time.perf_counter() - started:.1f} s")
        rng = random.Random(args.seed)
        lost_all = duplicated_all = 0
        print(f"{'trial':>5}  {'killed at commits':<20} {'lost':>5} {'dup':>5}  identical")
        for i in range(args.trials):
            first = rng.randint(0, total)
            points = [(first, rng.random() * 0.05)]
            if rng.random() < 0.5:
                points.append((rng.randint(first, total), rng.random() * 0.05))
            result = trial(recipe, base / f"trial-{i}", expected, points)
            lost_all += result.lost
            duplicated_all += result.duplicated
            kills = ", ".join("ended first" if k < 0 else str(k) for k in result.killed)
            print(f"{i:>5}  {kills:<20} {result.lost:>5} {result.duplicated:>5}  {result.identical}")
        print(f"total: {lost_all} rows lost, {duplicated_all} rows duplicated in {args.trials} trials")
    return 1 if lost_all or duplicated_all else 0


if __name__ == "__main__":
    raise SystemExit(main())
