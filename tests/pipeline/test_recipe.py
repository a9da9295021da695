"""Recipe checking: every mistake is reported with the recipe file, the line and the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit.cli import main
from datakit.errors import RecipeError
from datakit.pipeline import load_recipe

GOOD = """\
name: demo
seed: 7
shard_rows: 50
steps:
  - id: load
    uses: read
    with:
      path: data.jsonl
  - id: keep
    uses: filter
    with:
      where: "score > 0.5"
  - id: save
    uses: write
"""


def recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def error_of(path: Path, overrides: tuple[str, ...] = ()) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, list(overrides))
    return info.value


def test_good_recipe_loads_with_defaults_and_inputs(tmp_path):
    r = load_recipe(recipe(tmp_path, GOOD))
    assert (r.name, r.seed, r.shard_rows, r.output) == ("demo", 7, 50, "runs/demo")
    assert [s.id for s in r.steps] == ["load", "keep", "save"]
    assert [s.input for s in r.steps] == [None, "load", "keep"]
    assert r.step("keep").params.where == "score > 0.5"


def test_unknown_step_names_line_and_suggests(tmp_path):
    e = error_of(recipe(tmp_path, GOOD.replace("uses: filter", "uses: filtr")))
    assert (e.row, e.field) == (10, "steps.keep.uses")
    assert "unknown step 'filtr'" in e.message and "did you mean 'filter'" in e.message
    assert str(e).startswith(f"{tmp_path / 'recipe.yaml'}:10: steps.keep.uses: ")


def test_unknown_parameter_points_at_its_own_line(tmp_path):
    e = error_of(recipe(tmp_path, GOOD.replace("where:", "wher:")))
    assert (e.row, e.field) == (12, "steps.keep.with.wher")
    assert "unknown parameter 'wher'" in e.message and "did you mean 'where'" in e.message


def test_mistyped_parameter(tmp_path):
    text = GOOD.replace("uses: filter\n    with:\n      where: \"score > 0.5\"", "uses: sample\n    with:\n      fraction: half")
    e = error_of(recipe(tmp_path, text))
    assert (e.row, e.field) == (12, "steps.keep.with.fraction")
    assert "expected number" in e.message


def test_parameter_rule_of_the_step(tmp_path):
    text = GOOD.replace("uses: filter\n    with:\n      where: \"score > 0.5\"", "uses: sample\n    with:\n      fraction: 1.5")
    e = error_of(recipe(tmp_path, text))
    assert e.row == 12 and "fraction must be in (0, 1]" in e.message


def test_bad_sql_is_caught_before_running(tmp_path):
    e = error_of(recipe(tmp_path, GOOD.replace("score > 0.5", "score >")))
    assert (e.row, e.field) == (12, "steps.keep.with.where")
    assert "not a valid SQL expression" in e.message


def test_missing_required_parameter(tmp_path):
    e = error_of(recipe(tmp_path, GOOD.replace("    with:\n      path: data.jsonl\n", "")))
    assert e.field == "steps.load.with.path" and e.row == 6
    assert "missing required parameter 'path'" in e.message


def test_missing_input(tmp_path):
    e = error_of(recipe(tmp_path, GOOD.replace("    uses: write\n", "    uses: write\n    input: kept\n")))
    assert e.field == "steps.save.input" and e.row == 13
    assert "input 'kept' is not a step" in e.message and "did you mean 'keep'" in e.message


def test_cycle(tmp_path):
    text = GOOD.replace("    uses: filter\n", "    uses: filter\n    input: save\n")
    e = error_of(recipe(tmp_path, text))
    assert "cycle" in e.message and "keep" in e.message and "save" in e.message


def test_source_takes_no_input_and_first_step_needs_one(tmp_path):
    e = error_of(recipe(tmp_path, GOOD.replace("    uses: read\n", "    uses: read\n    input: save\n")))
    assert e.field == "steps.load.input" and "is a source" in e.message
    e = error_of(recipe(tmp_path, "steps:\n  - id: keep\n    uses: filter\n    with: {where: 'a > 1'}\n"))
    assert e.field == "steps.keep.input" and "needs an input" in e.message


def test_duplicate_id_and_duplicate_key(tmp_path):
    e = error_of(recipe(tmp_path, GOOD.replace("id: save", "id: keep")))
    assert e.row == 13 and "used twice (first at line 9)" in e.message
    e = error_of(recipe(tmp_path, GOOD.replace("seed: 7\n", "seed: 7\nseed: 8\n")))
    assert e.row == 3 and "appears twice" in e.message


def test_top_level_and_step_keys(tmp_path):
    e = error_of(recipe(tmp_path, GOOD.replace("seed: 7", "sed: 7")))
    assert e.row == 2 and "did you mean 'seed'" in e.message
    e = error_of(recipe(tmp_path, GOOD.replace("shard_rows: 50", "shard_rows: 0")))
    assert e.row == 3 and "at least 1" in e.message
    e = error_of(recipe(tmp_path, GOOD.replace("    uses: write\n", "    uses: write\n    persits: true\n")))
    assert e.row == 15 and "did you mean 'persist'" in e.message


def test_not_yaml(tmp_path):
    e = error_of(recipe(tmp_path, GOOD + "  - id: [unclosed\n"))
    assert e.row == 16 and "not valid YAML" in e.message
    e = error_of(recipe(tmp_path, "- just a list\n"))
    assert "mapping with a 'steps' list" in e.message


def test_overrides(tmp_path):
    path = recipe(tmp_path, GOOD)
    r = load_recipe(path, ["seed=3", "steps.keep.with.where=lang = 'en'", "output=elsewhere", "steps.save.persist=true"])
    assert r.seed == 3 and r.output == "elsewhere"
    assert r.step("keep").params.where == "lang = 'en'"
    assert r.document["steps"][1]["with"]["where"] == "lang = 'en'"
    e = error_of(path, ("steps.nope.with.where=x",))
    assert e.field == "--set steps.nope.with.where" and "no step with id 'nope'" in e.message
    e = error_of(path, ("sede=1",))
    assert "unknown recipe key 'sede'" in e.message
    e = error_of(path, ("steps.keep.with.wher=x",))
    assert e.field == "steps.keep.with.wher" and "unknown parameter" in e.message
    e = error_of(path, ("seed",))
    assert "key=value" in e.message


def test_cli_reports_recipe_errors_with_exit_2(tmp_path, capsys):
    path = recipe(tmp_path, GOOD.replace("where:", "wher:"))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:12: steps.keep.with.wher: unknown parameter 'wher'" in err
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "recipe file not found" in capsys.readouterr().err


def test_plugin_step_by_module_path(tmp_path):
    text = GOOD.replace("uses: filter\n    with:\n      where: \"score > 0.5\"",
                        "uses: tests.pipeline.service_steps:Service\n    with:\n      modulo: 3")
    r = load_recipe(recipe(tmp_path, text))
    assert r.step("keep").params.modulo == 3
    e = error_of(recipe(tmp_path, GOOD.replace("uses: filter", "uses: tests.pipeline.nothing:Step")))
    assert e.field == "steps.keep.uses" and "cannot import module" in e.message


def test_steps_command_lists_and_describes(capsys):
    assert main(["steps"]) == 0
    out = capsys.readouterr().out
    for name in ("read", "write", "filter", "select", "rename", "derive", "drop", "sample", "shuffle", "limit", "dedup"):
        assert f"\n{name} " in "\n" + out
    assert main(["steps", "sample"]) == 0
    out = capsys.readouterr().out
    assert "fraction: number (required)" in out and "by: list of text or null (default null)" in out
    assert main(["steps", "nope"]) == 2


MODELS = """\
name: gen
models:
  policy:
    path: org/chat-model
    engine: vllm
profiles:
  small:
    models.policy.path: local/tiny
    steps.slots.with.count: 4
steps:
  - id: slots
    uses: slots
    with:
      count: 100
  - id: instructions
    uses: magpie_instructions
    with:
      model: policy
      samples: 2
"""


def test_models_are_named_once_and_checked_like_parameters(tmp_path):
    r = load_recipe(recipe(tmp_path, MODELS))
    spec = r.step("instructions").params.model
    assert (spec.path, spec.engine) == ("org/chat-model", "vllm")
    r = load_recipe(recipe(tmp_path, MODELS), ["models.policy.engine=transformers"])
    assert r.step("instructions").params.model.engine == "transformers"
    e = error_of(recipe(tmp_path, MODELS.replace("model: policy", "model: polcy")))
    assert e.field == "steps.instructions.with.model" and "did you mean 'policy'" in e.message and e.row == 18
    e = error_of(recipe(tmp_path, MODELS.replace("engine: vllm", "engine: vlm")))
    assert e.field == "steps.instructions.with.model.engine" and "one of 'vllm'" in e.message
    e = error_of(recipe(tmp_path, MODELS.replace("engine: vllm", "engin: vllm")))
    assert e.field == "steps.instructions.with.model.engin" and "did you mean 'engine'" in e.message
    inline = MODELS.replace("model: policy", "model: {path: other/model, engine: transformers}")
    assert load_recipe(recipe(tmp_path, inline)).step("instructions").params.model.path == "other/model"


def test_profiles_apply_before_set(tmp_path):
    path = recipe(tmp_path, MODELS)
    r = load_recipe(path, profile="small")
    assert r.step("instructions").params.model.path == "local/tiny" and r.step("slots").params.count == 4
    r = load_recipe(path, ["steps.slots.with.count=9"], profile="small")
    assert r.step("slots").params.count == 9
    with pytest.raises(RecipeError) as info:
        load_recipe(path, profile="smal")
    assert info.value.field == "--profile" and "did you mean 'small'" in info.value.message
