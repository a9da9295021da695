"""The schema documents themselves: valid JSON Schema 2020-12, consistent with each other, and loadable."""

from __future__ import annotations

import json

import jsonschema
import pyarrow as pa
import pytest

from datakit.errors import SchemaError
from datakit.records import get_schema, list_schemas, load_schema, validate_table
from datakit.records.arrow_types import derive_fields
from datakit.records.detect import structural_problems
from datakit.records.schemas import schema_dir

KINDS = ["sft", "prompt_completion", "prompt_only", "preference", "implicit_preference", "unpaired_preference",
         "ranked", "stepwise_supervision", "instruction", "multimodal_preference"]


def test_every_record_kind_has_a_schema():
    assert sorted(s.name for s in list_schemas()) == sorted(KINDS)


@pytest.mark.parametrize("name", KINDS)
def test_schema_is_valid_json_schema_2020_12(name):
    document = get_schema(name).document
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)


def test_shared_definitions_are_identical_across_files():
    seen: dict[str, tuple[str, dict]] = {}
    for schema in list_schemas():
        for def_name, node in schema.document.get("$defs", {}).items():
            if def_name in seen:
                other, first = seen[def_name]
                assert node == first, f"$defs.{def_name} differs between {other} and {schema.name}"
            else:
                seen[def_name] = (schema.name, node)
    assert {"message", "text", "id", "metadata"} <= set(seen)


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_allows_id_and_metadata(name):
    for style in get_schema(name).styles:
        assert {"id", "metadata"} <= set(style.columns)


@pytest.mark.parametrize("name", KINDS)
def test_derived_arrow_schema_fits_its_own_style(name):
    schema = get_schema(name)
    for style in schema.styles:
        arrow = pa.schema(derive_fields(style.node, schema.resolve))
        assert structural_problems(schema, style, arrow) == []
        assert set(style.required) <= set(arrow.names)
        empty = arrow.empty_table()
        assert validate_table(empty, schema=schema, style=style.name).status == "valid"


def test_unknown_schema_names_the_known_ones():
    with pytest.raises(SchemaError, match="unknown schema 'pref'.*preference"):
        get_schema("pref")


def test_keywords_the_validator_cannot_check_are_refused(tmp_path):
    path = tmp_path / "mine.schema.json"
    path.write_text(json.dumps({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}))
    with pytest.raises(SchemaError, match="cannot check uniqueItems"):
        load_schema(path)


def test_remote_references_are_refused(tmp_path):
    path = tmp_path / "remote.schema.json"
    path.write_text(json.dumps({"type": "object", "properties": {"a": {"$ref": "other.json#/x"}}}))
    with pytest.raises(SchemaError, match="only local references"):
        get_schema(str(path)).resolve({"$ref": "other.json#/x"})


def test_a_users_own_schema_file_validates_data(tmp_path):
    path = tmp_path / "qa.schema.json"
    path.write_text(json.dumps({
        "type": "object",
        "properties": {"question": {"type": "string", "minLength": 5},
                       "answer": {"type": "string", "enum": ["yes", "no"]},
                       "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["question", "answer"],
    }))
    table = pa.table({"question": ["Is water wet?", "Why"], "answer": ["yes", "maybe"], "confidence": [0.5, 1.5]})
    report = validate_table(table, schema=str(path))
    assert report.schema == "qa"
    assert [(i.row, i.field, i.message) for i in report.issues] == [
        (2, "question", "has 3 characters, outside 5..any"),
        (2, "answer", "'maybe' is not one of: yes, no"),
        (2, "confidence", "1.5 is not >= 0 and <= 1"),
    ]


def test_bundled_schema_directory_is_found():
    assert (schema_dir() / "preference.schema.json").is_file()
