"""The heuristic filters: each rule drops under its own reason, first failing rule counts, chat turns by role."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.curate.filters import select_text
from datakit.curate.filters.repetition import ngram_repetition, piece_repetition
from datakit.errors import RecipeError
from datakit.pipeline import run
from datakit.pipeline.params import ParamError, build_params
from datakit.pipeline.registry import lookup
from datakit.pipeline.step import Retry, StepContext
from tests.conftest import write_jsonl
from tests.pipeline.conftest import read_output, write_recipe


def make_step(uses: str, **params):
    cls = lookup(uses)
    step = cls(build_params(cls.Params, params), StepContext(uses, 0, Retry(), Path("."), Path(".")))
    step.setup()
    return step


def apply(uses: str, data: list[str | None] | pa.Table, **params) -> tuple[list, dict[str, int]]:
    """Run one filter over `data` (texts, or a table) in one batch: the kept values of its column, and the drops."""
    table = data if isinstance(data, pa.Table) else pa.table({"text": pa.array(data, pa.string())})
    batches = table.combine_chunks().to_batches()
    result = make_step(uses, **params).process(batches[0] if batches else pa.RecordBatch.from_pylist([], table.schema))
    return result.output.column(params.get("column", "text")).to_pylist(), result.dropped


# --- the shared part: empty text, rule order, text selection -----------------------------------------------------

def test_null_and_blank_text_is_dropped_as_empty():
    kept, dropped = apply("format_filter", [None, "", " \n\t", "Fine."])
    assert kept == ["Fine."] and dropped == {"empty": 3}


def test_an_empty_batch_passes_through():
    kept, dropped = apply("repetition_filter", [])
    assert kept == [] and dropped == {}


def test_length_bounds_and_rule_order():
    texts = ["", "tiny", "four words here ok", "a considerably longer text with many words in it", None,
             "one two", "one two three four five"]
    kept, dropped = apply("length_filter", texts, min_chars=5, max_chars=30, min_words=3, max_words=4)
    assert kept == ["four words here ok"]
    # "tiny" also has too few words and the long text too many: each counts once, under the first rule.
    assert dropped == {"empty": 2, "too_short_chars": 1, "too_long_chars": 1, "too_few_words": 1,
                       "too_many_words": 1}


def test_bounds_are_inclusive_and_characters_are_code_points():
    kept, dropped = apply("length_filter", ["ab", "abc", "äöü", "abcd"], min_chars=3, max_chars=3)
    assert kept == ["abc", "äöü"] and dropped == {"too_short_chars": 1, "too_long_chars": 1}


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory) -> str:
    """A word-level tokenizer: one token per run of word characters and per run of punctuation."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = ["hello world, this is a tiny corpus.", "big words and small words!", "the end"] * 20
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]"], show_progress=False))
    folder = tmp_path_factory.mktemp("tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)
    return str(folder)


def test_token_bounds_use_the_tokenizer(word_tokenizer):
    texts = ["hello world", "hello, world", "hello, world!!", "hello, big world!", "unknown, words, here"]
    kept, dropped = apply("length_filter", texts, min_tokens=3, max_tokens=4, tokenizer=word_tokenizer)
    # 2, 3, 4, 5 and 5 tokens ("[UNK]" counts like any other token); words alone would be 2, 2, 2, 3, 3.
    assert kept == ["hello, world", "hello, world!!"]
    assert dropped == {"too_few_tokens": 1, "too_many_tokens": 2}


def test_tokens_are_counted_after_the_cheaper_rules(word_tokenizer):
    kept, dropped = apply("length_filter", ["hello", "hello, world", "x" * 50], max_chars=20, min_tokens=2,
                          tokenizer=word_tokenizer)
    assert kept == ["hello, world"] and dropped == {"too_long_chars": 1, "too_few_tokens": 1}


SFT = [
    {"id": "a", "messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Write a list:"},
                             {"role": "assistant", "content": "Here you go."}]},
    {"id": "b", "messages": [{"role": "user", "content": "Hi"},
                             {"role": "assistant", "content": "As an AI language model, I can't say hi."}]},
    {"id": "c", "messages": [{"role": "user", "content": "Weather?"},
                             {"role": "assistant", "content": None,
                              "tool_calls": [{"type": "function", "function": {"name": "weather"}}]},
                             {"role": "tool", "content": "sunny"},
                             {"role": "assistant", "content": "It is sunny."}]},
    {"id": "d", "messages": [{"role": "user", "content": "Nobody answers this one"}]},
]


def test_text_of_a_messages_column_is_the_chosen_role():
    batch = pa.Table.from_pylist(SFT).to_batches()[0]
    assert select_text(batch, "messages", "assistant", "f").to_list() == [
        "Here you go.", "As an AI language model, I can't say hi.", "It is sunny.", ""]
    assert select_text(batch, "messages", "user", "f").to_list() == [
        "Write a list:", "Hi", "Weather?", "Nobody answers this one"]
    assert select_text(batch, "messages", None, "f").to_list()[2] == "Weather?\n\nsunny\n\nIt is sunny."


def test_filters_check_assistant_turns_by_default_and_any_role_on_request():
    table = pa.Table.from_pylist(SFT)
    kept, dropped = apply("phrase_filter", table, column="messages")
    assert [m[-1]["content"] for m in kept] == ["Here you go.", "It is sunny."]
    assert dropped == {"empty": 1, "refusal": 1}
    kept, dropped = apply("format_filter", table, column="messages", role="user")
    assert len(kept) == 3 and dropped == {"trailing_colon": 1}


def test_preference_columns_and_multimodal_turns():
    rows = [{"prompt": [{"role": "user", "content": "Hi"}],
             "chosen": [{"role": "assistant", "content": "Hello!"}],
             "rejected": [{"role": "assistant", "content": "I'm sorry, but I cannot greet you."}]}] * 2
    kept, dropped = apply("phrase_filter", pa.Table.from_pylist(rows), column="rejected")
    assert kept == [] and dropped == {"refusal": 2}
    parts = pa.Table.from_pylist([{"messages": [
        {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat."}, {"type": "text", "text": "Grey."}]}]}])
    assert select_text(parts.to_batches()[0], "messages", "assistant", "f").to_list() == ["A cat.\nGrey."]
    assert select_text(parts.to_batches()[0], "messages", "user", "f").to_list() == ["What is it?"]


# --- repetition ---------------------------------------------------------------------------------------------------

def test_line_and_paragraph_repetition_statistics():
    texts = pl.Series(["alpha\nbeta\nalpha\n\n  alpha  \ngamma", "same para\n\nsame para\n\nother", "", "one"])
    share, chars = piece_repetition(texts)
    assert np.allclose(share, [2 / 5, 1 / 3, 0, 0]) and np.allclose(chars, [10 / 24, 9 / 23, 0, 0])
    share, chars = piece_repetition(texts, paragraphs=True)
    assert np.allclose(share, [0, 1 / 3, 0, 0]) and np.allclose(chars, [0, 9 / 23, 0, 0])


def test_lines_without_letters_or_digits_are_structure_not_repeats():
    json_block = '{\n  "a": [\n    {\n      "x": 1\n    },\n    {\n      "x": 2\n    }\n  ]\n}'
    share, chars = piece_repetition(pl.Series([json_block, "```\nx = 1\n```\n\n```\ny = 2\n```"]))
    assert np.allclose(share, [0, 0]) and np.allclose(chars, [0, 0])


def test_ngram_repetition_statistics():
    text = "One two three four five x one two three four five"  # 39 characters in 11 words
    stats = ngram_repetition(pl.Series([text, "a b a b a b", "all words differ here", "x a b", "a b y"]))
    # The most frequent 2-grams all occur twice; the longest of them is "three four" (9 characters).
    assert np.allclose(stats["top_2gram"], [18 / 39, 1, 0, 0, 0])
    assert np.allclose(stats["top_3gram"], [26 / 39, 1, 0, 0, 0])
    assert np.allclose(stats["top_4gram"], [32 / 39, 1, 0, 0, 0])  # 2 x 4 of 6 characters, capped at 1
    assert np.allclose(stats["dup_5gram"], [38 / 39, 0, 0, 0, 0])
    assert np.allclose(stats["dup_6gram"], [0, 0, 0, 0, 0])


def reference_ngrams(text: str) -> dict[str, float]:
    """Gopher's n-gram statistics, written plainly, one text at a time."""
    words = text.lower().split()
    total = sum(map(len, words))
    out = {}
    for n in (2, 3, 4):
        counts = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
        top = max(counts.values(), default=0)
        chars = max((top * sum(map(len, g)) for g, c in counts.items() if c == top), default=0) if top > 1 else 0
        out[f"top_{n}gram"] = min(chars / total, 1) if total else 0
    for n in range(5, 11):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        counts = Counter(grams)
        covered = {i + k for i, g in enumerate(grams) if counts[g] > 1 for k in range(n)}
        out[f"dup_{n}gram"] = sum(len(words[i]) for i in covered) / total if total else 0
    return out


def reference_pieces(text: str, paragraphs: bool) -> tuple[float, float]:
    pieces = [p.strip() for p in (re.split(r"\n\s*\n", text) if paragraphs else text.split("\n"))]
    pieces = [p for p in pieces if p]
    repeats = [p for i, p in enumerate(pieces) if p in pieces[:i]]
    total = sum(map(len, pieces))
    return (len(repeats) / len(pieces) if pieces else 0, sum(map(len, repeats)) / total if total else 0)


TEXTS = st.lists(st.lists(st.sampled_from(["a", "bb", "The", "the", "cat", "sat", "\n", "\n\n", " \n "]),
                          max_size=40).map(" ".join), max_size=6)


@settings(max_examples=150, deadline=None)
@given(TEXTS)
def test_batch_statistics_match_a_text_at_a_time_reference(texts):
    stats = ngram_repetition(pl.Series(texts, dtype=pl.String))
    for i, text in enumerate(texts):
        for name, value in reference_ngrams(text).items():
            assert stats[name][i] == pytest.approx(value), (text, name)
    for paragraphs in (False, True):
        share, chars = piece_repetition(pl.Series(texts, dtype=pl.String), paragraphs)
        for i, text in enumerate(texts):
            assert (share[i], chars[i]) == pytest.approx(reference_pieces(text, paragraphs))


REPETITIVE = {
    "dup_lines": "alpha\nbeta\nalpha\n\nalpha\ngamma",
    "dup_paragraphs": "same para\n\nsame para\n\nother",
    "dup_line_chars": "repeat me\nrepeat me\nand one more line",
    "dup_paragraph_chars": "repeat me\n\nrepeat me\n\nand one more line",
    "top_2gram": "the cat the cat sat",
    "top_3gram": "one two three one two three end",
    "top_4gram": "one two three four one two three four",
    **{f"dup_{n}gram": " x ".join([" ".join(f"w{k}" for k in range(n))] * 2) for n in range(5, 11)},
}
CLEAN = "Water boils at one hundred degrees Celsius at sea level, and it freezes at zero."


@pytest.mark.parametrize("reason", list(REPETITIVE))
def test_each_repetition_rule_alone(reason):
    cls = lookup("repetition_filter")
    off = {f.name: None for f in cls.Params.__dataclass_fields__.values() if f.name.startswith("max_")}
    kept, dropped = apply("repetition_filter", [REPETITIVE[reason], CLEAN], **{**off, f"max_{reason}": 0.1})
    assert kept == [CLEAN] and dropped == {reason: 1}


def test_repetition_defaults_count_the_first_rule_failed():
    texts = list(REPETITIVE.values()) + [CLEAN, None]
    kept, dropped = apply("repetition_filter", texts)
    # Repeated paragraphs are repeated lines too, and repeated n-grams contain repeated 2-grams: the first rule in
    # Gopher's order counts. The 10-gram text passes top_2gram (2 x 4 of 41 characters) but not top_3gram (12/41).
    assert kept == [CLEAN]
    assert dropped == {"empty": 1, "dup_lines": 4, "top_2gram": 8, "top_3gram": 1}


# --- symbols, phrases, format -------------------------------------------------------------------------------------

def symbol_rules(**only):
    return {"max_symbol_ratio": None, "max_non_alnum": None, "max_bullet_lines": None, "max_ellipsis_lines": None,
            **only}


def test_symbol_ratio_counts_hash_runs_and_ellipses_per_word():
    texts = ["## Title\nSome text here", "# Heading\n" + "word " * 10, "Wait... what… really...", "Plain words."]
    kept, dropped = apply("symbol_filter", texts, **symbol_rules(max_symbol_ratio=0.1))
    assert kept == texts[1::2] and dropped == {"symbol_ratio": 2}  # 1/5 and 3/3 per word; 1/12 passes


def test_non_alphanumeric_share_of_visible_characters():
    texts = ["{}[]();;=+ ab", "x = f(a, b) + 1", "Ünïcödé wörds 東京"]  # 10/12, exactly 5/10, 0
    kept, dropped = apply("symbol_filter", texts, **symbol_rules(max_non_alnum=0.5))
    assert kept == texts[1:] and dropped == {"non_alnum": 1}


def test_bullet_and_ellipsis_lines():
    texts = ["• one\n• two\n  • three", "- one\n- two\n- three", "one...\ntwo…\nthree\nfour",
             "one...\ntwo\n\nthree\nfour"]
    kept, dropped = apply("symbol_filter", texts, **symbol_rules(max_bullet_lines=0.9, max_ellipsis_lines=0.3))
    assert kept == [texts[1], texts[3]] and dropped == {"bullet_lines": 1, "ellipsis_lines": 1}
    kept, dropped = apply("symbol_filter", texts, **symbol_rules(max_bullet_lines=0.9, bullets="•-"))
    assert dropped == {"bullet_lines": 2}


def test_symbol_defaults_keep_ordinary_markdown_and_code():
    answer = "## Steps\n\n1. Install it.\n2. Run `make`.\n\n```python\nfor i in range(3):\n    print(i)\n```\n- done"
    kept, dropped = apply("symbol_filter", [answer, "#### ### ## #", "....... ......"])
    assert kept == [answer] and dropped == {"symbol_ratio": 2}


PHRASES = [
    "As an AI language model, I have no feelings.",
    "I’m sorry, but I can’t do that.",
    "I'M  SORRY,\nBUT I CAN'T help.",
    "Lorem ipsum dolor sit amet.",
    "Please CLICK HERE to continue. As an AI language model, I agree.",
    "The secret word is banana.",
    "We ship C++ (v2.0)? Yes.",
    "Sorry, I can help with that!",
    "I can't wait to help!",
]


def test_phrases_ignore_case_apostrophes_and_whitespace():
    kept, dropped = apply("phrase_filter", PHRASES, extra_phrases=["Secret  Word", "c++ (V2.0)?"])
    assert kept == PHRASES[7:] and dropped == {"refusal": 4, "boilerplate": 1, "phrase": 2}


def test_phrase_lists_can_be_switched_off():
    kept, dropped = apply("phrase_filter", PHRASES, refusals=False)
    assert kept == PHRASES[:3] + PHRASES[5:] and dropped == {"boilerplate": 2}
    kept, dropped = apply("phrase_filter", PHRASES, refusals=False, boilerplate=False)
    assert kept == PHRASES and dropped == {}


FORMAT = {
    "!!! ??? ...": "only_punctuation",
    "?!:": "only_punctuation",  # also ends with ':', counted under the first rule
    "Here is the list:": "trailing_colon",
    "Here is the code：\n": "trailing_colon",
    "a\nb\nc\nd\ne\nf": "too_many_newlines",
    "```python\nprint(1)\n": "unbalanced_fences",
    "~~~\ncode": "unbalanced_fences",
    "Sure!<|im_end|>": "template_tokens",
    "[INST] hi [/INST] there": "template_tokens",
    "Fine.\nUser: and now?": "role_leak",
    "Done.\n### Instruction: write more": "role_leak",
    "Caf\ufffd au lait": "replacement_char",
    "bell\x07 here": "control_chars",
}
WELL_FORMED = ["```python\nprint(1)\n```", "Tabs\tand\r\nnewlines are fine.", "東京は日本の首都です。", "12345",
               "Use the ratio 3:2 here.", "  ```\n  indented fence\n  ```"]


def test_each_format_rule_and_its_reason():
    kept, dropped = apply("format_filter", list(FORMAT) + WELL_FORMED, max_newlines=4)
    assert kept == WELL_FORMED and dropped == dict(Counter(FORMAT.values()))


def test_format_rules_can_be_switched_off():
    off = {name: False for name in ("only_punctuation", "trailing_colon", "unbalanced_fences", "template_tokens",
                                    "role_leak", "replacement_char", "control_chars")}
    kept, dropped = apply("format_filter", list(FORMAT), **off)
    assert len(kept) == len(FORMAT) and dropped == {}


# --- a recipe, and errors -----------------------------------------------------------------------------------------

def sft_row(i: int, answer: str) -> dict:
    return {"id": f"r{i}", "messages": [{"role": "user", "content": f"Question {i}?"},
                                        {"role": "assistant", "content": answer}]}


ANSWERS = [
    "Paris is the capital of France.",                      # kept
    "Here is what you asked for:",                          # format: trailing_colon
    "I'm sorry, but I can't help with that request.",       # phrases: refusal
    "Sure.",                                                # length: too_few_words
    "spam spam spam spam spam spam spam spam",              # repetition: top_2gram
    "Boil water, add the pasta and cook it for ten minutes.",  # kept
    "```\nunclosed",                                        # format: unbalanced_fences
    "• a\n• b\n• c",                                        # symbols: bullet_lines (6 words, counting bullets)
    "Use a ruler; measure twice and cut once.",             # kept
]


def test_recipe_publishes_the_kept_rows_and_the_summary_counts_each_reason(tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", [sft_row(i, a) for i, a in enumerate(ANSWERS)])
    recipe = write_recipe(tmp_path / "curate.yaml", [
        {"id": "load", "uses": "read", "with": {"path": str(data)}},
        {"id": "format", "uses": "format_filter", "with": {"column": "messages"}},
        {"id": "phrases", "uses": "phrase_filter", "with": {"column": "messages"}},
        {"id": "length", "uses": "length_filter", "with": {"column": "messages", "min_words": 4}},
        {"id": "repetition", "uses": "repetition_filter", "with": {"column": "messages"}},
        {"id": "symbols", "uses": "symbol_filter", "with": {"column": "messages"}},
        {"id": "save", "uses": "write", "with": {"schema": "sft"}},
    ], name="curate", output=str(tmp_path / "run"), shard_rows=4)
    result = run(recipe)
    out = read_output(result.output())
    assert out.column("id").to_pylist() == ["r0", "r5", "r8"]
    assert out.column("messages").to_pylist()[0] == sft_row(0, ANSWERS[0])["messages"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    dropped = {s["id"]: s["dropped"] for s in summary["steps"]}
    assert dropped["format"] == {"trailing_colon": 1, "unbalanced_fences": 1}
    assert dropped["phrases"] == {"refusal": 1}
    assert dropped["length"] == {"too_few_words": 1}
    assert dropped["repetition"] == {"top_2gram": 1}
    assert dropped["symbols"] == {"bullet_lines": 1}
    assert summary["outputs"]["save"]["rows"] == 3


def test_a_parquet_text_column_through_a_recipe(tmp_path):
    data = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": ["Fine text here.", None, "Lorem ipsum dolor."]}), data)
    recipe = write_recipe(tmp_path / "r.yaml", [
        {"id": "load", "uses": "read", "with": {"path": str(data)}},
        {"id": "phrases", "uses": "phrase_filter"},
        {"id": "save", "uses": "write"},
    ], name="docs", output=str(tmp_path / "docs"))
    result = run(recipe)
    assert read_output(result.output()).column("text").to_pylist() == ["Fine text here."]
    assert next(s for s in result.summary["steps"] if s["id"] == "phrases")["dropped"] == {"empty": 1,
                                                                                          "boilerplate": 1}


def recipe_error(tmp_path: Path, uses: str, params: dict, name: str = "bad") -> RecipeError:
    data = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"text": ["Some text."], "score": [1]}), data)
    recipe = write_recipe(tmp_path / f"{name}.yaml", [
        {"id": "load", "uses": "read", "with": {"path": str(data)}},
        {"id": "f", "uses": uses, "with": params},
        {"id": "save", "uses": "write"},
    ], name=name, output=str(tmp_path / name))
    with pytest.raises(RecipeError) as info:
        run(recipe)
    return info.value


def test_a_missing_or_unusable_column_names_the_step_parameter(tmp_path):
    error = recipe_error(tmp_path, "length_filter", {"column": "messages", "min_words": 1})
    assert error.field == "steps.f.with.column" and "column 'messages' is not in the data" in error.message
    error = recipe_error(tmp_path, "format_filter", {"column": "score"}, name="score")
    assert error.field == "steps.f.with.column" and "neither text nor a list of chat messages" in error.message


@pytest.mark.parametrize(("uses", "params", "key", "message"), [
    ("length_filter", {"min_words": 5, "max_words": 2}, "min_words", "must not exceed max_words"),
    ("length_filter", {"min_chars": -1}, "min_chars", "must be 0 or more"),
    ("length_filter", {"max_tokens": 100}, "tokenizer", "tokenizer is needed"),
    ("repetition_filter", {"max_dup_lines": 1.5}, "max_dup_lines", "fraction between 0 and 1"),
    ("symbol_filter", {"max_bullet_lines": -0.1}, "max_bullet_lines", "fraction between 0 and 1"),
    ("symbol_filter", {"bullets": ""}, "bullets", "at least one bullet"),
    ("phrase_filter", {"extra_phrases": ["ok", " "]}, "extra_phrases", "blank phrases"),
    ("format_filter", {"max_newlines": -2}, "max_newlines", "0 or more"),
    ("format_filter", {"role": ""}, "role", "role such as 'assistant'"),
])
def test_bad_parameters_are_refused(uses, params, key, message):
    with pytest.raises(ParamError) as info:
        build_params(lookup(uses).Params, params)
    assert info.value.key == key and message in info.value.message


def test_bad_parameters_in_a_recipe_name_the_key(tmp_path):
    error = recipe_error(tmp_path, "repetition_filter", {"max_top_2gram": 2})
    assert error.field == "steps.f.with.max_top_2gram" and "fraction between 0 and 1" in error.message


def test_an_unloadable_tokenizer_names_the_parameter(tmp_path):
    with pytest.raises(RecipeError) as info:
        make_step("length_filter", max_tokens=5, tokenizer=str(tmp_path / "no-such-tokenizer"))
    assert info.value.field == "steps.length_filter.with.tokenizer" and "cannot load the tokenizer" in str(info.value)
