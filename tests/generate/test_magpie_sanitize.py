"""The Magpie instruction sanitizer: one test per rule, and rules that fire together."""

from __future__ import annotations

import pytest

from datakit.generate.magpie.sanitize import Rule, sanitize, sanitize_many


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("1. What is the capital of France?", "What is the capital of France?"),
        ("2) Name three noble gases.", "Name three noble gases."),
        ("(3) Define entropy.", "Define entropy."),
        ("- Summarise the plot of Hamlet.", "Summarise the plot of Hamlet."),
        ("Question: Why is the sky blue?", "Why is the sky blue?"),
        ("**Question:** Why is the sky blue?", "Why is the sky blue?"),
        ("Task: Write a haiku about rain.", "Write a haiku about rain."),
        ("Q1: Explain photosynthesis.", "Explain photosynthesis."),
        ("## Problem 2: Compute 7 * 6.", "Compute 7 * 6."),
        ("1. Task: Sort these words.", "Sort these words."),  # prefixes are stripped until none is left
    ],
)
def test_prefix_numbering_and_labels_are_stripped(raw: str, clean: str):
    assert sanitize(raw) == (clean, Rule.PREFIX)


@pytest.mark.parametrize(
    "raw",
    [
        "3.14 is pi; explain why it is irrational.",  # a number, not numbering
        "Questions about history are welcome.",  # a word, not a label
        "**Bold** claims need evidence.",
    ],
)
def test_look_alike_prefixes_are_kept(raw: str):
    assert sanitize(raw) == (raw, 0)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("What is 2+2? Answer: 4", "What is 2+2?"),
        ("What is 2+2?\n\n**Answer:** 4", "What is 2+2?"),
        ("Solve x^2 = 9 for x.\nSolution: x = 3 or x = -3.", "Solve x^2 = 9 for x."),
        ("Compare TCP and UDP.\nEXPLANATION: TCP is reliable.", "Compare TCP and UDP."),
        ("Prove it.\nFinal Answer: done", "Prove it."),
        ("Solve 3x + 2 = 11.\n\n## Step 1: Subtract 2", "Solve 3x + 2 = 11."),
        # The question is kept whole, lines and all, when an answer marker ends it.
        ("Read this:\nRoses are red.\nWhat rhymes?\nAnswer: blue", "Read this:\nRoses are red.\nWhat rhymes?"),
    ],
)
def test_cut_at_answer_markers(raw: str, clean: str):
    assert sanitize(raw) == (clean, Rule.ANSWER)


def test_answer_words_inside_a_request_are_not_markers():
    raw = "Give the answer: yes or no. Is the sky blue?"
    assert sanitize(raw) == (raw, 0)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("How do I fix this error? I tried reinstalling.", "How do I fix this error?"),
        ("Is Pluto a planet?\nPluto was reclassified in 2006.", "Is Pluto a planet?"),
        ('He asked "why?" and left. Tell me more.', 'He asked "why?"'),
    ],
)
def test_keep_up_to_the_first_question_mark(raw: str, clean: str):
    assert sanitize(raw) == (clean, Rule.QUESTION)


def test_question_mark_at_the_end_keeps_a_multi_line_question_whole():
    raw = "Given the text:\nThe cat sat.\nWhat is its subject?"
    assert sanitize(raw) == (raw, 0)


def test_question_mark_in_a_url_is_not_a_question():
    raw = "Summarise https://example.com/page?id=3 in one line."
    assert sanitize(raw) == (raw, 0)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Write a story about a dragon.\nOnce upon a time...", "Write a story about a dragon."),
        ("List three fruits.\n\n1. Apple\n2. Pear", "List three fruits."),
    ],
)
def test_keep_the_first_line_without_a_question_mark(raw: str, clean: str):
    assert sanitize(raw) == (clean, Rule.FIRST_LINE)


def test_rules_combine_and_every_result_is_kept():
    # Prefix stripping and the later cut both show in the text and in the rule id.
    assert sanitize("**Question:** How do I sort a list?\n\n**Answer:** sorted()") == (
        "How do I sort a list?",
        Rule.PREFIX | Rule.ANSWER,
    )
    assert sanitize("Task: Write a limerick.\nThere once was...") == (
        "Write a limerick.",
        Rule.PREFIX | Rule.FIRST_LINE,
    )
    assert sanitize("Q2: Why? Because.") == ("Why?", Rule.PREFIX | Rule.QUESTION)


def test_nothing_left_is_an_empty_instruction():
    assert sanitize("Answer: 42") == ("", Rule.ANSWER)
    assert sanitize("Question:") == ("", Rule.PREFIX)
    assert sanitize("   ") == ("", 0)


def test_plain_instruction_is_unchanged_apart_from_surrounding_space():
    assert sanitize("  Translate 'hello' into French.\n") == ("Translate 'hello' into French.", 0)


def test_sanitize_many_matches_sanitize():
    texts = ["1. Hi there.", "What? No.", "Plain.", "A\nB"]
    cleaned, rules = sanitize_many(texts)
    assert list(zip(cleaned, rules, strict=True)) == [sanitize(t) for t in texts]
    assert all(type(r) is int for r in rules)
