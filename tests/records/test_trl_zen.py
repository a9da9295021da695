"""Every row of TRL's own sample dataset validates under the datakit schema of its format."""

from __future__ import annotations

import pytest

from datakit.records import validate
from tests.conftest import DATA

# TRL config -> (datakit schema, style)
MATCHING = {
    "conversational_implicit_prompt_preference": ("implicit_preference", "conversational"),
    "conversational_language_modeling": ("sft", "conversational"),
    "conversational_preference": ("preference", "conversational"),
    "conversational_prompt_completion": ("prompt_completion", "conversational"),
    "conversational_prompt_only": ("prompt_only", "conversational"),
    "conversational_unpaired_preference": ("unpaired_preference", "conversational"),
    "standard_implicit_prompt_preference": ("implicit_preference", "standard"),
    "standard_language_modeling": ("sft", "standard"),
    "standard_preference": ("preference", "standard"),
    "standard_prompt_completion": ("prompt_completion", "standard"),
    "standard_prompt_only": ("prompt_only", "standard"),
    "standard_stepwise_supervision": ("stepwise_supervision", "standard"),
    "standard_unpaired_preference": ("unpaired_preference", "standard"),
}


def test_fixture_covers_every_config():
    assert sorted(p.name for p in (DATA / "trl_zen").iterdir() if p.is_dir()) == sorted(MATCHING)


@pytest.mark.parametrize("config", sorted(MATCHING))
def test_config_is_valid_under_its_schema(config):
    schema, style = MATCHING[config]
    result = validate(DATA / "trl_zen" / config, schema=schema, style=style)
    assert [f.status for f in result.files] == ["valid", "valid"], [str(i) for f in result.files for i in f.issues]
    assert result.rows == 19
    assert result.exit_code == 0


@pytest.mark.parametrize("config", sorted(MATCHING))
def test_config_is_detected_as_its_schema(config):
    schema, style = MATCHING[config]
    result = validate(DATA / "trl_zen" / config)
    expected = schema if schema == "stepwise_supervision" else f"{schema} ({style})"
    assert {(f.schema, f.detected) for f in result.files} == {(expected, True)}
