"""The Ray executor: the same rows, files and counts as the local one, resumable by shard, datakit errors intact."""

from __future__ import annotations

from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from datakit.cli import main  # noqa: E402
from datakit.errors import RecipeError, StepError  # noqa: E402
from datakit.pipeline import run  # noqa: E402
from datakit.pipeline.plan import build_plan  # noqa: E402
from datakit.pipeline.ray_executor import computed_nodes, stage_resources  # noqa: E402
from datakit.pipeline.recipe import load_recipe  # noqa: E402
from datakit.pipeline.rundir import RunDir  # noqa: E402
from tests.pipeline.conftest import read_output, write_input, write_recipe  # noqa: E402

SERVICE = "tests.pipeline.service_steps:Service"
ROWS = 3000
SHARD_ROWS = 200  # 15 shards


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    """One small local Ray instance for the whole module (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def recipe_with(tmp_path: Path, middle: list[dict]) -> Path:
    """A recipe reading the synthetic input, running `middle`, and writing the result."""
    data = tmp_path / "input.jsonl"
    if not data.exists():
        write_input(tmp_path, ROWS)
    steps = [{"id": "load", "uses": "read", "with": {"path": str(data)}}, *middle, {"id": "save", "uses": "write"}]
    return write_recipe(tmp_path / "recipe.yaml", steps, name="ray", shard_rows=SHARD_ROWS, seed=3,
                        output=str(tmp_path / "run"))


CURATE = [
    {"id": "keep", "uses": "filter", "with": {"where": "score > 0.2"}},
    {"id": "some", "uses": "sample", "with": {"fraction": 0.8}},
    {"id": "dedup", "uses": "dedup", "with": {"columns": ["text"]}},
    {"id": "more", "uses": "derive", "with": {"columns": {"n_chars": "length(text)", "half": "score / 2"}}},
]


def counts(result) -> dict[str, tuple]:
    return {s["id"]: (s["in"], s["out"], s["failed"], s["dropped"]) for s in result.summary["steps"]}


def assert_same_runs(recipe: Path, tmp_path: Path) -> None:
    """Run with both executors into separate run directories; outputs and counts must be identical."""
    local = run(recipe, [f"output={tmp_path / 'local'}"])
    on_ray = run(recipe, [f"output={tmp_path / 'ray'}"], executor="ray")
    expected, got = read_output(local.output()), read_output(on_ray.output())
    assert expected.num_rows > 0
    assert got.schema.equals(expected.schema, check_metadata=True)
    assert got.equals(expected)
    local_files = sorted(local.output().iterdir())
    assert [f.name for f in sorted(on_ray.output().iterdir())] == [f.name for f in local_files]
    for f in local_files:  # byte for byte: the same rows make the same Parquet files
        assert (on_ray.output() / f.name).read_bytes() == f.read_bytes()
    assert counts(on_ray) == counts(local)
    assert on_ray.summary["executor"] == "ray"


def test_ray_gives_the_rows_files_and_counts_of_the_local_executor(tmp_path):
    assert_same_runs(recipe_with(tmp_path, CURATE), tmp_path)


def test_shuffle_and_limit_match_the_local_executor(tmp_path):
    middle = [{"id": "mix", "uses": "shuffle"}, {"id": "first", "uses": "limit", "with": {"rows": 1234}}]
    assert_same_runs(recipe_with(tmp_path, middle), tmp_path)


def test_resumed_ray_run_computes_only_the_lost_shards(tmp_path):
    calls_log = tmp_path / "calls.log"
    middle = [{"id": "ask", "uses": SERVICE, "with": {"calls_log": str(calls_log)}}, *CURATE[2:]]
    recipe = recipe_with(tmp_path, middle)
    first = run(recipe, executor="ray")
    expected = read_output(first.output())
    assert len(calls_log.read_text().splitlines()) == ROWS // SHARD_ROWS

    fingerprint = next(s["fingerprint"] for s in first.summary["steps"] if s["id"] == "save")
    store = first.run_dir / "steps" / "save" / fingerprint[:16]
    entries = {p.name: p.read_text() for p in (store / "entries").iterdir()}
    lost = ["shard-00001.json", "shard-00004.json", "shard-00011.json"]
    for name in lost:
        (store / "entries" / name).unlink()
    (store / "complete.json").unlink()

    again = run(recipe, resume=True, executor="ray")
    assert read_output(again.output()).equals(expected)
    assert len(calls_log.read_text().splitlines()) == ROWS // SHARD_ROWS  # the stored service shards were read back
    after = {p.name: p.read_text() for p in (store / "entries").iterdir()}
    assert after.keys() == entries.keys()
    assert {n for n in entries if after[n] != entries[n]} == set(lost)  # the others are the committed versions
    assert counts(again) == counts(first)


def test_a_recipe_error_in_a_worker_reaches_the_caller_as_itself(tmp_path):
    recipe = recipe_with(tmp_path, [{"id": "keep", "uses": "filter", "with": {"where": "no_such_column > 1"}}])
    with pytest.raises(RecipeError, match="no_such_column") as caught:
        run(recipe, executor="ray")
    assert type(caught.value) is RecipeError
    assert caught.value.field == "steps.keep.with.where"
    assert "Failed to apply" not in str(caught.value)  # Ray's retry note is not part of the message
    assert main(["run", str(recipe), "--executor", "ray", "--overwrite", "--no-progress"]) == 2


def test_a_broken_step_in_a_worker_is_a_step_error(tmp_path):
    recipe = recipe_with(tmp_path, [{"id": "ask", "uses": SERVICE, "with": {"crash_on_id": 450}}])
    with pytest.raises(StepError, match=r"step 'ask' .* broke on shard 2: KeyError"):
        run(recipe, executor="ray")


def test_actor_resources_follow_the_steps_of_the_pass(tmp_path):
    middle = [
        {"id": "ask", "uses": SERVICE, "resources": {"num_gpus": 1}},
        {"id": "keep", "uses": "filter", "with": {"where": "score > 0.2"}, "resources": {"num_cpus": 2}},
        {"id": "dedup", "uses": "dedup", "with": {"columns": ["text"]}},
        {"id": "more", "uses": "derive", "with": {"columns": {"n": "length(text)"}},
         "resources": {"memory": 2e9, "concurrency": 5}},
    ]
    recipe = load_recipe(recipe_with(tmp_path, middle), ["steps.save.resources.concurrency=3"])
    plan = build_plan(recipe, RunDir(tmp_path / "run"), store_sources=True)
    first, second = plan.passes(plan.roots[0])
    assert [n.id for n in computed_nodes(first)] == ["ask", "dedup", "keep"]
    assert [n.id for n in computed_nodes(second)] == ["save", "more", "dedup", "keep"]  # keep: pure, recomputed
    cluster = {"CPU": 16.0, "GPU": 2.0}
    # No `concurrency` asked: as many actors as the GPUs (and CPUs) hold.
    assert stage_resources(computed_nodes(first), cluster, 15) == \
        {"size": 2, "num_cpus": 2.0, "num_gpus": 1.0, "memory": None}
    # The smallest `concurrency` asked wins; the largest cpus, gpus and memory.
    assert stage_resources(computed_nodes(second), cluster, 15) == \
        {"size": 3, "num_cpus": 2.0, "num_gpus": 0.0, "memory": 2e9}
    # Never more actors than shards to compute; one CPU each by default.
    assert stage_resources(computed_nodes(second)[2:], cluster, 15)["size"] == 8
    assert stage_resources(computed_nodes(second)[2:], cluster, 4)["size"] == 4
    assert stage_resources([plan.node("dedup")], cluster, 40)["size"] == 16
