"""Running recipes: reuse by fingerprint, interrupted runs, failed rows and their retry, summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datakit.cli import main
from datakit.errors import RunStateError, StepError
from datakit.pipeline import run
from datakit.pipeline.rundir import RunDir
from tests.pipeline.conftest import read_output, write_input, write_recipe

SERVICE = "tests.pipeline.service_steps:Service"


def service_recipe(tmp_path: Path, rows: int = 400, where: str = "score >= 0.1", dedup: bool = True,
                   service: dict | None = None, **settings) -> Path:
    data = tmp_path / "input.jsonl"
    if not data.exists():
        write_input(tmp_path, rows)
    steps = [
        {"id": "load", "uses": "read", "with": {"path": str(data)}},
        {"id": "keep", "uses": "filter", "with": {"where": where}},
        {"id": "ask", "uses": SERVICE, "with": {"calls_log": str(tmp_path / "calls.log"), **(service or {})}},
    ]
    if dedup:
        steps.append({"id": "dedup", "uses": "dedup", "with": {"columns": ["text"]}})
    steps += [{"id": "tail", "uses": "derive", "with": {"columns": {"n": "length(answer)"}}},
              {"id": "save", "uses": "write"}]
    settings = {"name": "svc", "output": str(tmp_path / "run"), "shard_rows": 50, "retry_backoff": 0.01, **settings}
    return write_recipe(tmp_path / "recipe.yaml", steps, **settings)


def calls(tmp_path: Path) -> int:
    log = tmp_path / "calls.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def step_summary(result, step_id: str) -> dict:
    return next(s for s in result.summary["steps"] if s["id"] == step_id)


def test_rerun_reuses_and_a_change_recomputes_only_what_follows(tmp_path):
    recipe = service_recipe(tmp_path)
    first = run(recipe)
    shards = calls(tmp_path)
    assert shards == 8  # 400 rows / 50
    out = read_output(first.output())

    again = run(recipe)
    assert calls(tmp_path) == shards  # nothing stored was redone
    assert read_output(again.output()).equals(out)

    # A step after the service changes: the service is not called again.
    changed = run(recipe, ["steps.tail.with.columns.n=length(answer) * 2"])
    assert calls(tmp_path) == shards
    assert read_output(changed.output()).column("n").to_pylist() != out.column("n").to_pylist()

    # A step before it changes: the service runs again, on the new rows.
    run(recipe, ["steps.keep.with.where=score >= 0.5"])
    assert calls(tmp_path) == 2 * shards


def test_summary_counts_and_manifest(tmp_path):
    result = run(service_recipe(tmp_path))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    by_id = {s["id"]: s for s in summary["steps"]}
    assert by_id["load"]["in"] == 400
    for s in summary["steps"]:
        assert s["in"] == s["out"] + s["failed"] + sum(s["dropped"].values()), s
    assert by_id["keep"]["out"] == by_id["ask"]["in"] and by_id["dedup"]["dropped"]["duplicate"] > 0
    assert by_id["ask"]["metrics"] == {"calls": 8}
    assert summary["outputs"]["save"]["rows"] == by_id["save"]["out"] == len(read_output(result.output()))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    ask = manifest["steps"]["ask"]
    assert ask["stored"] and ask["num_shards"] == 8 and [s["shard"] for s in ask["shards"]] == list(range(8))
    assert manifest["steps"]["dedup"]["index"]["num_shards"] == 8
    assert not manifest["steps"]["keep"]["stored"]  # pure steps are recomputed, not stored


def test_interrupted_run_needs_resume_or_overwrite(tmp_path):
    recipe = service_recipe(tmp_path)
    run(recipe)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    (tmp_path / "run" / "run.json").write_text(json.dumps({**info, "status": "running"}))
    with pytest.raises(RunStateError) as e:
        run(recipe)
    assert "--resume" in str(e.value) and "--overwrite" in str(e.value)
    assert run(recipe, resume=True).summary["outputs"]["save"]["rows"] > 0
    before = calls(tmp_path)
    run(recipe, overwrite=True)
    assert calls(tmp_path) == before + 8  # everything redone


def test_a_locked_run_directory_is_refused(tmp_path):
    recipe = service_recipe(tmp_path)
    with RunDir(tmp_path / "run").locked(), pytest.raises(RunStateError, match="another datakit run"):
        run(recipe)


def test_failed_rows_go_to_the_failed_table_and_retry_recovers_them(tmp_path):
    flag = tmp_path / "down"
    flag.touch()
    recipe = service_recipe(tmp_path, dedup=False, service={"down_flag": str(flag), "modulo": 5})
    result = run(recipe)
    ask = step_summary(result, "ask")
    out = read_output(result.output())
    ids = set(out.column("id").to_pylist())
    expected_failed = {i for i in range(400) if i % 5 == 0} & set(range(400))
    assert ask["failed"] > 0 and not ids & expected_failed  # failed rows never travel on
    assert all(a is not None for a in out.column("answer").to_pylist())
    failed = pq.read_table(Path(ask["failed_rows"]))
    assert failed.num_rows == ask["failed"]
    assert set(failed.column("_error").to_pylist()) == {"service unavailable for this row"}
    assert all(i % 5 == 0 for i in failed.column("id").to_pylist())
    assert {"_shard", "_row", "text"} <= set(failed.column_names)

    # Still down: retrying recovers nothing and changes nothing.
    same = run(recipe, retry_failed=True)
    assert same.retried == {"ask": {"retried": ask["failed"], "recovered": 0}}
    assert read_output(same.output()).equals(out)

    flag.unlink()
    healed = run(recipe, retry_failed=True)
    assert healed.retried == {"ask": {"retried": ask["failed"], "recovered": ask["failed"]}}
    assert step_summary(healed, "ask")["failed"] == 0
    clean = run(service_recipe(tmp_path / "clean", dedup=False))
    got = read_output(healed.output()).sort_by("id")
    assert got.equals(read_output(clean.output()).sort_by("id"))
    assert not list(Path(ask["failed_rows"]).glob("*.parquet")) or step_summary(healed, "ask")["failed_rows"] is None


def test_retry_failed_redoes_global_steps_downstream(tmp_path):
    flag = tmp_path / "down"
    flag.touch()
    recipe = service_recipe(tmp_path, service={"down_flag": str(flag), "modulo": 3})
    run(recipe)
    flag.unlink()
    healed = run(recipe, retry_failed=True)
    clean = run(service_recipe(tmp_path / "clean"))
    # Dedup kept first occurrences in the healed data: the same texts survive as in a clean run.
    assert sorted(read_output(healed.output()).column("text").to_pylist()) == \
        sorted(read_output(clean.output()).column("text").to_pylist())


def test_transient_errors_are_retried_with_backoff_then_recorded(tmp_path):
    flag = tmp_path / "down"
    flag.touch()
    recipe = service_recipe(tmp_path, rows=100, dedup=False, service={"down_flag": str(flag), "mode": "transient"},
                            retries=2)
    result = run(recipe)
    assert calls(tmp_path) == 2 * 3  # 2 shards, first try plus 2 retries each
    ask = step_summary(result, "ask")
    assert ask["failed"] == step_summary(result, "keep")["out"] and ask["out"] == 0
    errors = set(pq.read_table(Path(ask["failed_rows"])).column("_error").to_pylist())
    assert errors == {"service unavailable (after 2 retries)"}


def test_a_broken_step_stops_the_run_and_names_it(tmp_path, capsys):
    recipe = service_recipe(tmp_path, dedup=False, service={"crash_on_id": 120})
    with pytest.raises(StepError) as e:
        run(recipe)
    assert "step 'ask'" in str(e.value) and "shard" in str(e.value)
    assert main(["run", str(recipe), "--resume"]) == 1
    assert "datakit: error: step 'ask'" in capsys.readouterr().err


def test_fan_out_two_sinks_from_one_step(tmp_path):
    data = write_input(tmp_path, 300)
    steps = [{"id": "load", "uses": "read", "with": {"path": str(data)}},
             {"id": "en", "uses": "filter", "with": {"where": "lang = 'en'"}},
             {"id": "save_en", "uses": "write"},
             {"id": "fr", "uses": "filter", "input": "load", "with": {"where": "lang = 'fr'"}},
             {"id": "save_fr", "uses": "write"}]
    result = run(write_recipe(tmp_path / "r.yaml", steps, output=str(tmp_path / "run"), shard_rows=40))
    en, fr = read_output(result.output("save_en")), read_output(result.output("save_fr"))
    assert len(en) + len(fr) == 300 and set(en.column("lang").to_pylist()) == {"en"}


def test_cli_run_prints_summary(tmp_path, capsys):
    recipe = service_recipe(tmp_path)
    assert main(["run", str(recipe), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "dedup dropped: duplicate" in out and "output of 'save'" in out
    assert main(["run", str(recipe), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "svc"


def test_the_source_waits_for_slow_steps(tmp_path):
    """Backpressure: the source never runs more than the in-flight shards ahead of the slowest step."""
    from tests.pipeline.service_steps import Flow

    Flow.yielded = Flow.finished = Flow.most_ahead = 0
    steps = [{"id": "gen", "uses": "tests.pipeline.service_steps:Numbers", "with": {"rows": 6000, "batch_rows": 50}},
             {"id": "slow", "uses": "tests.pipeline.service_steps:Slow", "with": {"delay": 0.01}},
             {"id": "save", "uses": "write"}]
    result = run(write_recipe(tmp_path / "r.yaml", steps, output=str(tmp_path / "run"), shard_rows=100, workers=2))
    assert result.summary["outputs"]["save"]["rows"] == 6000 == Flow.finished
    # 2 x workers shards in flight, one being cut, one batch of slack
    assert Flow.most_ahead <= (2 * 2 + 1) * 100 + 50, Flow.most_ahead


def test_progress_bars_and_tokens(tmp_path, capsys):
    recipe = service_recipe(tmp_path, dedup=True)
    run(recipe, progress=True)
    err = capsys.readouterr().err
    assert "ask" in err and "rows" in err and "pass 2" in err


def test_pure_steps_record_their_failed_rows_too(tmp_path):
    data = write_input(tmp_path, 300)
    steps = [{"id": "load", "uses": "read", "with": {"path": str(data)}},
             {"id": "en", "uses": "tests.pipeline.service_steps:EnglishOnly"},
             {"id": "dedup", "uses": "dedup", "with": {"columns": ["text"]}},
             {"id": "save", "uses": "write"}]
    result = run(write_recipe(tmp_path / "r.yaml", steps, output=str(tmp_path / "run"), shard_rows=40))
    en = step_summary(result, "en")
    assert not en["stored"] and en["failed"] > 0
    failed = read_output(Path(en["failed_rows"]))
    assert failed.num_rows == en["failed"] and set(failed.column("lang").to_pylist()) == {"fr"}
    assert set(read_output(result.output()).column("lang").to_pylist()) == {"en"}


def test_setup_runs_once_per_process_and_engines_get_one_caller(tmp_path):
    from tests.pipeline import service_steps
    from tests.pipeline.service_steps import Flow, Service

    log = tmp_path / "setup.log"
    recipe = service_recipe(tmp_path, service={"setup_log": str(log), "delay": 0.05}, workers=2)
    Flow.running = Flow.most_calls = 0
    run(recipe)
    assert log.read_text().splitlines() == ["setup"]  # 8 shards on 2 threads, one setup
    assert Flow.most_calls == 2  # a thread-safe step runs on both threads

    class Engine(Service):
        thread_safe = False

    service_steps.Engine = Engine  # importable as tests.pipeline.service_steps:Engine
    try:
        Flow.running = Flow.most_calls = 0
        engine = service_recipe(tmp_path / "engine", service={"delay": 0.02}, workers=2)
        engine.write_text(engine.read_text().replace("service_steps:Service", "service_steps:Engine"))
        run(engine)
        assert Flow.most_calls == 1  # one shard at a time, as one batch
    finally:
        del service_steps.Engine


def test_cli_retry_failed(tmp_path, capsys):
    flag = tmp_path / "down"
    flag.touch()
    recipe = service_recipe(tmp_path, dedup=False, service={"down_flag": str(flag), "modulo": 4})
    assert main(["run", str(recipe), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ask failed" in out and "--retry-failed" in out
    flag.unlink()
    assert main(["run", str(recipe), "--retry-failed", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "failed rows of 'ask'" in out and "recovered" in out and "ask failed" not in out
