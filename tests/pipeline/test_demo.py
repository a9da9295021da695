"""The bundled demo recipe runs end to end and publishes a valid sft dataset."""

from __future__ import annotations

from datakit.pipeline import run
from datakit.records import get_schema, validate
from tests.conftest import REPO
from tests.pipeline.conftest import read_output


def test_demo_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # recipe paths are relative to where datakit runs
    result = run(REPO / "pipelines" / "demo.yaml", [f"output={tmp_path / 'demo'}"])
    out = read_output(result.output())
    assert out.column_names == ["id", "messages"]
    assert out.column("id").to_pylist() == ["sft-0001", "sft-0004"]  # the 4-turn conversations are too long
    steps = {s["id"]: s for s in result.summary["steps"]}
    assert steps["short"]["dropped"] == {"too_long": 2}
    report = validate([str(result.output())], schema=get_schema("sft"))
    assert report.exit_code == 0
