"""Exactly-once: a run killed with SIGKILL at random points and resumed ends with exactly the rows of an
uninterrupted run (the same ids, the same contents, the same order)."""

from __future__ import annotations

import random

import pytest

from datakit.pipeline import run
from tests.pipeline.conftest import read_output
from tests.pipeline.killing import commits, kill_recipe, trial


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    directory = tmp_path_factory.mktemp("kill")
    recipe = kill_recipe(directory, rows=1440)
    result = run(recipe)
    return recipe, read_output(result.output()), commits(directory / "run")


def test_reference_run_has_work_in_every_phase(reference):
    _, expected, total = reference
    assert total == 4 * 24  # service shards, dedup parts, shuffle parts, sink shards
    assert 0 < expected.num_rows < 1440


@pytest.mark.parametrize("seed", range(6))
def test_killed_and_resumed_run_loses_and_duplicates_nothing(reference, tmp_path, seed):
    recipe, expected, total = reference
    rng = random.Random(seed)
    points = [(rng.randint(0, total), rng.random() * 0.05)]
    if seed >= 4:  # kill the resumed run as well
        points.append((rng.randint(points[0][0], total), rng.random() * 0.05))
    result = trial(recipe, tmp_path / "run", expected, points)
    assert (result.lost, result.duplicated) == (0, 0), result
    assert result.identical, result
