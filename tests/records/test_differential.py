"""datakit's column-wise validator agrees row by row with a plain reference: the `jsonschema` package for what
JSON Schema expresses, plus a direct Python reading of the x-datakit rules, on generated rows."""

from __future__ import annotations

import jsonschema
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datakit.records import get_schema, validate_table

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
TURNS = pa.list_(MESSAGE)

ROLES = st.sampled_from(["system", "user", "assistant", "tool", "bot", None])
# Blank and almost-blank strings in the sense of Python's str.isspace, which JSON Schema's \S follows.
CONTENT = st.one_of(
    st.sampled_from([None, "", " ", "\t\n", "\u00a0", "\u2003\u3000", "\x1c", "\u200bx", "\u180e", " a", "ok", "\u2028"]),
    st.text(max_size=4),
)
MESSAGES = st.one_of(st.none(), st.lists(st.one_of(st.none(), st.fixed_dictionaries({"role": ROLES, "content": CONTENT})),
                                         max_size=4))


def _style_validator(name: str, style: str) -> jsonschema.Draft202012Validator:
    schema = get_schema(name)
    document = {**schema.style(style).node, "$defs": schema.document["$defs"]}
    return jsonschema.Draft202012Validator(document)


def _roles_ok(turns, rule) -> bool:
    roles = [m["role"] for m in turns if m is not None and m["role"] in ("system", "user", "assistant", "tool")]
    if len(roles) != len(turns) or not turns:
        return True  # unknown, missing or null turns are the schema's errors, not the order rule's
    if roles[0] not in rule["first"] or roles[-1] not in rule["last"]:
        return False
    return all(b in rule["next"].get(a, []) for a, b in zip(roles, roles[1:]))


def _reference_invalid(row, validator, rules) -> bool:
    if not validator.is_valid(row):
        return True
    for column, rule in rules.items():
        turns = row.get(column)
        if turns is None:
            continue
        if not _roles_ok(turns, rule):
            return True
        if any(m is not None and m["content"] is None for m in turns):
            return True  # needs content (or tool calls, which these rows never have)
    chosen, rejected = row.get("chosen"), row.get("rejected")
    return chosen is not None and rejected is not None and chosen == rejected


def _without_nulls(row):
    return {k: v for k, v in row.items() if v is not None}


def _rule(schema, ref):
    return schema.resolve({"$ref": ref})["x-datakit"]["roles"]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({"prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES}), min_size=1,
                max_size=12))
def test_conversational_preference_matches_reference(rows):
    schema = get_schema("preference")
    validator = _style_validator("preference", "conversational")
    rules = {"prompt": _rule(schema, "#/$defs/prompt_turns"), "chosen": _rule(schema, "#/$defs/reply_turns"),
             "rejected": _rule(schema, "#/$defs/reply_turns")}
    table = pa.Table.from_pylist(rows, schema=pa.schema([("prompt", TURNS), ("chosen", TURNS), ("rejected", TURNS)]))
    report = validate_table(table, schema="preference", style="conversational", max_errors=10_000)
    datakit_bad = {i.row - 1 for i in report.issues}
    reference_bad = {i for i, row in enumerate(rows) if _reference_invalid(_without_nulls(row), validator, rules)}
    assert datakit_bad == reference_bad


TEXT = st.one_of(st.none(), CONTENT)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.fixed_dictionaries({"prompt": TEXT, "chosen": TEXT, "rejected": TEXT}), min_size=1, max_size=12))
def test_standard_preference_matches_reference(rows):
    validator = _style_validator("preference", "standard")
    table = pa.Table.from_pylist(rows, schema=pa.schema([("prompt", pa.string()), ("chosen", pa.string()),
                                                         ("rejected", pa.string())]))
    report = validate_table(table, schema="preference", style="standard", max_errors=10_000)
    datakit_bad = {i.row - 1 for i in report.issues}
    reference_bad = {
        i for i, row in enumerate(rows)
        if not validator.is_valid(_without_nulls(row)) or (row["chosen"] is not None and row["chosen"] == row["rejected"])
    }
    assert datakit_bad == reference_bad
