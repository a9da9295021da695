"""pipelines/curate.yaml end to end: every filter and dedup mode on the bundled example, each planted fault caught,
each drop counted under its reason in the run summary."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from datakit import testing
from datakit.curate.classifiers import train_classifier
from datakit.pipeline import run
from datakit.records import validate_table
from tests.curate.example_data import DAMAGED, OUTPUT, build_rows, render
from tests.pipeline.conftest import read_output

REPO = Path(__file__).resolve().parents[2]
DEDUP_REASONS = {"exact": "duplicate", "near": "near_duplicate", "semantic": "semantic_duplicate"}


def test_the_bundled_example_is_what_its_builder_makes():
    assert OUTPUT.read_text(encoding="utf-8") == render(build_rows())


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("curate")
    model = root / "quality.bin"
    trained = train_classifier(OUTPUT, model, text_column="messages", label_column="quality")
    assert trained.labels == ["bad", "good"]
    recipe = root / "curate.yaml"
    shutil.copy(REPO / "pipelines" / "curate.yaml", recipe)
    result = run(recipe, [f"steps.load.with.path={OUTPUT}", f"steps.quality.with.model={model}",
                          f"models.embedder.path={testing.minilm_path()}", f"output={root / 'run'}"])
    return result, read_output(result.output())


def test_every_step_reports_its_drops_by_reason(curated):
    result, out = curated
    summary = json.loads((result.run_dir / "summary.json").read_text())
    steps = {s["id"]: s for s in summary["steps"]}
    expected = ["load", "instructions", "responses", "length", "repetition", "symbols", "phrases", "language",
                "quality", "exact", "near", "semantic", "save"]
    assert list(steps) == expected
    for previous, step in zip(expected, expected[1:]):
        assert steps[step]["in"] == steps[previous]["out"]
        assert steps[step]["in"] - steps[step]["out"] == sum(steps[step]["dropped"].values())
        assert steps[step]["failed"] == 0
    assert steps["load"]["out"] == len(build_rows()) and steps["save"]["out"] == out.num_rows
    for step, reason in DEDUP_REASONS.items():
        assert steps[step]["dropped"].get(reason, 0) > 0, step
    assert steps["instructions"]["dropped"] == {"trailing_colon": 3}
    assert steps["phrases"]["dropped"].get("refusal") == 4 and steps["phrases"]["dropped"].get("boilerplate") == 3


def test_planted_faults_are_caught_and_copies_keep_one_row(curated):
    _, out = curated
    rows = {row["id"]: row for row in build_rows()}
    kept = set(out.column("id").to_pylist())
    assert not [i for i in kept if rows[i]["origin"] in DAMAGED]  # every damaged row dropped
    survivors = Counter(rows[i]["origin"] for i in kept)
    assert survivors["ifeval"] >= 120  # most real answers pass (some are not in English, some are copied)
    for row in rows.values():
        if row["origin"] in ("exact", "near"):  # a copy and its original: never both
            assert not {row["id"], row["copy_of"]} <= kept, row["id"]
    assert validate_table(out, "sft").error_count == 0
