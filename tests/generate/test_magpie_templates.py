"""Magpie pre-query templates, stops and prompts derived from real chat templates, and the reference presets."""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from datakit.errors import EngineError, UsageError
from datakit.generate.magpie import presets
from datakit.generate.magpie.presets import PRESETS, guess_family, preset
from datakit.generate.magpie.templates import (
    derive_pre_query,
    derive_stops,
    follow_up_prompt,
    response_prompt,
    user_header,
)

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


@dataclass(frozen=True)
class Family:
    """The special tokens a model family's tokenizer has, as far as its chat template needs them."""

    specials: tuple[str, ...]
    bos: str | None
    eos: str


FAMILIES = {
    # Llama-3 base tokenizer: eos <|end_of_text|> (Instruct configs later switched it to <|eot_id|>).
    "llama3": Family(
        ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        "<|begin_of_text|>",
        "<|end_of_text|>",
    ),
    # Qwen2.5-Instruct: no BOS, eos <|im_end|>.
    "qwen": Family(("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None, "<|im_end|>"),
    "phi3": Family(
        ("<s>", "</s>", "<unk>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"),
        "<s>",
        "<|endoftext|>",
    ),
    "gemma": Family(("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"), "<bos>", "<eos>"),
    "smolvlm": Family(("<|im_start|>", "<end_of_utterance>", "<|endoftext|>"), None, "<end_of_utterance>"),
}


def trl_template(name: str) -> str:
    """A real chat template as shipped in the trl wheel (read at test time, not copied into the repo)."""
    return (importlib.resources.files("trl") / "chat_templates" / name).read_text(encoding="utf-8")


Build = Callable[..., transformers.PreTrainedTokenizerFast]


@pytest.fixture(scope="module")
def make_tokenizer() -> Build:
    """Build a tiny byte-level tokenizer with a family's special tokens and the given chat template.

    It has no merges (one token per byte), so text round-trips exactly; like the real ones, it adds BOS when asked
    for special tokens, which is what would double a BOS rendered by the template.
    """

    def build(family: str, chat_template: str | None) -> transformers.PreTrainedTokenizerFast:
        spec = FAMILIES[family]
        alphabet = sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())
        core = tokenizers.Tokenizer(tokenizers.models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
        core.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        core.decoder = tokenizers.decoders.ByteLevel()
        core.add_special_tokens(list(spec.specials))
        if spec.bos is not None:
            core.post_processor = tokenizers.processors.TemplateProcessing(
                single=f"{spec.bos} $A", special_tokens=[(spec.bos, core.token_to_id(spec.bos))]
            )
        tok = transformers.PreTrainedTokenizerFast(tokenizer_object=core, bos_token=spec.bos, eos_token=spec.eos)
        tok.chat_template = chat_template
        return tok

    return build


# ---------------------------------------------------------------------------------------------------------------
# Pre-query templates versus the reference table


@pytest.mark.parametrize(
    ("template", "family", "reference"),
    [
        ("llama3.jinja", "llama3", "llama3"),
        ("qwen2_5.jinja", "qwen", "qwen2.5"),  # the default system block is kept, as in the reference
        ("gemma.jinja", "gemma", "gemma"),  # trl: Gemma (1.1) and Gemma-2 ship this same template
        # Newer generations of the same families render the same prefix as the older reference entries:
        ("gemma3.jinja", "gemma", "gemma"),  # no system turn given, so nothing is folded into the user turn
        ("qwen3.jinja", "qwen", "qwen2"),  # Qwen3 injects no default system turn
        ("qwen3_instruct_2507.jinja", "qwen", "qwen2"),
    ],
)
def test_derived_pre_query_equals_the_reference(make_tokenizer: Build, template: str, family: str, reference: str):
    tok = make_tokenizer(family, trl_template(template))
    assert derive_pre_query(tok).text == preset(reference).pre_query_template


LLAMA31_SYSTEM_BLOCK = (
    "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n\n<|eot_id|>"
)


@pytest.mark.parametrize("reference", ["llama3.1", "llama3.3"])
def test_llama31_template_adds_a_dated_system_block_the_reference_leaves_out(make_tokenizer: Build, reference: str):
    # Llama-3.1's template always renders a system turn with the knowledge cutoff and a date, even with no system
    # message; the reference prompts 3.1/3.3 with the bare Llama-3 prefix. Derived = BOS + that block + the rest.
    tok = make_tokenizer("llama3", trl_template("llama3_1.jinja"))
    bos = "<|begin_of_text|>"
    ref = preset(reference).pre_query_template
    assert derive_pre_query(tok).text == bos + LLAMA31_SYSTEM_BLOCK + ref.removeprefix(bos)


def test_llama32_template_dates_its_system_block_today_unless_told(make_tokenizer: Build):
    tok = make_tokenizer("llama3", trl_template("llama3_2.jinja"))
    # Rendered with `strftime_now`, so the prompt text changes from day to day ...
    assert re.search(r"\nToday Date: \d{2} [A-Z][a-z]{2} \d{4}\n\n<\|eot_id\|>", derive_pre_query(tok).text)
    # ... unless the date is pinned through the template's own variable.
    pinned = derive_pre_query(tok, template_kwargs={"date_string": "26 Jul 2024"}).text
    ref = preset("llama3.1").pre_query_template
    assert pinned == "<|begin_of_text|>" + LLAMA31_SYSTEM_BLOCK + ref.removeprefix("<|begin_of_text|>")


@pytest.mark.parametrize("template", ["phi3.jinja", "phi3_5.jinja"])
def test_phi3_template_renders_no_bos_the_reference_writes_one(make_tokenizer: Build, template: str):
    # The template starts straight at <|user|>; the reference's "<s> " is the BOS the sentencepiece tokenizer adds,
    # decoded with sentencepiece's leading space. The derived prompt follows the template: no BOS, no space.
    tok = make_tokenizer("phi3", trl_template(template))
    pre = derive_pre_query(tok)
    assert pre.text == "<|user|>\n"
    assert preset("phi3").pre_query_template == "<s> " + pre.text
    assert tok.bos_token_id not in pre.token_ids


def test_gemma2_template_renders_one_newline_the_reference_two(make_tokenizer: Build):
    # Gemma-2 ships the Gemma template, whose user header ends in a single "\n"; the reference's Gemma-2 entry has
    # "\n\n". The derived text is what the model was trained on; the preset keeps the reference string as data.
    tok = make_tokenizer("gemma", trl_template("gemma.jinja"))
    derived = derive_pre_query(tok).text
    assert derived == "<bos><start_of_turn>user\n"
    assert preset("gemma2").pre_query_template == derived + "\n"


def test_qwen2_family_template_injects_a_default_system_turn_the_reference_drops(make_tokenizer: Build):
    # Qwen2-VL's template (byte-identical to Qwen2.5-VL's in trl) adds "You are a helpful assistant." when no system
    # turn is given; the reference's Qwen2 entry starts at the user header.
    tok = make_tokenizer("qwen", trl_template("qwen2_5_vl.jinja"))
    default = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    assert derive_pre_query(tok).text == default + preset("qwen2").pre_query_template


def test_system_prompt_is_rendered_as_a_system_turn(make_tokenizer: Build):
    tok = make_tokenizer("qwen", trl_template("qwen2_5.jinja"))
    text = derive_pre_query(tok, presets.MATH_SYSTEM_PROMPT).text
    assert text == f"<|im_start|>system\n{presets.MATH_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
    llama = make_tokenizer("llama3", trl_template("llama3.jinja"))
    assert derive_pre_query(llama, "Be brief.").text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
    )


def test_template_without_system_role_does_what_it_does_with_one(make_tokenizer: Build):
    # Gemma-3 folds the system text into the first user turn, so the pre-query ends inside that turn.
    tok = make_tokenizer("gemma", trl_template("gemma3.jinja"))
    assert derive_pre_query(tok, "Be brief.").text == "<bos><start_of_turn>user\nBe brief.\n\n"
    # Gemma (1.1/2) refuses a system turn outright: nothing sensible to fall back to.
    with pytest.raises(EngineError, match="System role not supported"):
        derive_pre_query(make_tokenizer("gemma", trl_template("gemma.jinja")), "Be brief.")


# ---------------------------------------------------------------------------------------------------------------
# Token ids


@pytest.mark.parametrize(
    ("template", "family"), [("llama3.jinja", "llama3"), ("llama3_1.jinja", "llama3"), ("gemma.jinja", "gemma")]
)
def test_bos_rendered_by_the_template_appears_once_in_the_ids(make_tokenizer: Build, template: str, family: str):
    tok = make_tokenizer(family, trl_template(template))
    pre = derive_pre_query(tok)
    assert pre.token_ids.count(tok.bos_token_id) == 1
    assert pre.token_ids[0] == tok.bos_token_id
    assert tok.decode(pre.token_ids) == pre.text
    # The tokenizer would add a BOS of its own if asked; the derived ids must not.
    assert tok(pre.text)["input_ids"].count(tok.bos_token_id) == 2


# ---------------------------------------------------------------------------------------------------------------
# Stops and user headers


def test_llama3_stops_are_end_of_turn_header_tokens_and_eos(make_tokenizer: Build):
    tok = make_tokenizer("llama3", trl_template("llama3.jinja"))
    stop, ids = derive_stops(tok)
    assert stop[0] == "<|eot_id|>"
    assert {"<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"} <= set(stop)
    assert ids == tuple(tok.convert_tokens_to_ids(s) for s in stop)  # every one is a single special token
    # The same set the reference lists for Llama-3 (it adds the plain word "assistant" on top).
    assert set(stop) == set(preset("llama3").stop)
    assert derive_pre_query(tok).stop == stop


@pytest.mark.parametrize(
    ("template", "family", "reference", "end_of_turn"),
    [
        ("llama3_1.jinja", "llama3", "llama3.1", "<|eot_id|>"),
        ("qwen2_5.jinja", "qwen", "qwen2.5", "<|im_end|>"),
        ("phi3.jinja", "phi3", "phi3", "<|end|>"),
        ("gemma.jinja", "gemma", "gemma", "<end_of_turn>"),
    ],
)
def test_derived_stops_lie_within_the_reference_stops(
    make_tokenizer: Build, template: str, family: str, reference: str, end_of_turn: str
):
    tok = make_tokenizer(family, trl_template(template))
    stop, ids = derive_stops(tok)
    assert stop[0] == end_of_turn
    assert set(stop) <= set(preset(reference).stop)
    assert len(ids) == len(stop)


@pytest.mark.parametrize(
    ("template", "family", "header"),
    [
        ("llama3.jinja", "llama3", "<|start_header_id|>user<|end_header_id|>\n\n"),
        ("llama3_1.jinja", "llama3", "<|start_header_id|>user<|end_header_id|>\n\n"),
        ("qwen2_5.jinja", "qwen", "<|im_start|>user\n"),
        ("phi3.jinja", "phi3", "<|user|>\n"),
        ("gemma.jinja", "gemma", "<start_of_turn>user\n"),
    ],
)
def test_user_header_is_the_reference_mt_append_template(make_tokenizer: Build, template: str, family: str, header):
    assert user_header(make_tokenizer(family, trl_template(template))) == header


# ---------------------------------------------------------------------------------------------------------------
# Follow-up and response prompts

CHAT = [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "Seven."}]


@pytest.mark.parametrize(
    ("template", "family"),
    [("llama3.jinja", "llama3"), ("qwen2_5.jinja", "qwen"), ("phi3.jinja", "phi3"), ("gemma.jinja", "gemma")],
)
def test_follow_up_prompt_ends_with_the_user_header(make_tokenizer: Build, template: str, family: str):
    tok = make_tokenizer(family, trl_template(template))
    ids = follow_up_prompt(tok, CHAT, None)
    header_ids = tok.encode(user_header(tok), add_special_tokens=False)
    assert list(ids[-len(header_ids) :]) == header_ids
    assert tok.decode(ids).count("Seven.") == 1


def test_follow_up_prompt_is_the_chat_so_far_plus_the_user_header(make_tokenizer: Build):
    tok = make_tokenizer("llama3", trl_template("llama3.jinja"))
    system = presets.MULTI_TURN_SYSTEM_PROMPT
    ids = follow_up_prompt(tok, CHAT, system)
    so_far = tok.apply_chat_template([{"role": "system", "content": system}, *CHAT], tokenize=False)
    assert tok.decode(ids) == so_far + user_header(tok)
    assert ids.count(tok.bos_token_id) == 1


def test_follow_up_prompt_leaves_out_the_eos_phi3_writes_after_a_finished_chat(make_tokenizer: Build):
    # Phi-3's template ends a chat rendered without a generation prompt with eos; "render, then append the
    # header" would put that eos in the middle of the prompt. The next user turn follows <|end|>\n directly.
    tok = make_tokenizer("phi3", trl_template("phi3.jinja"))
    assert tok.apply_chat_template(CHAT, tokenize=False).endswith("<|endoftext|>")
    text = tok.decode(follow_up_prompt(tok, CHAT, None))
    assert text == "<|user|>\nName a prime.<|end|>\n<|assistant|>\nSeven.<|end|>\n<|user|>\n"


def test_follow_up_prompt_rejects_two_system_turns(make_tokenizer: Build):
    tok = make_tokenizer("llama3", trl_template("llama3.jinja"))
    with pytest.raises(UsageError, match="system"):
        follow_up_prompt(tok, [{"role": "system", "content": "x"}, *CHAT], "y")


def test_response_prompt_is_the_chat_template_with_a_generation_prompt(make_tokenizer: Build):
    tok = make_tokenizer("qwen", trl_template("qwen2_5.jinja"))
    ids = response_prompt(tok, CHAT[:1])
    expected = tok.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True)
    assert tok.decode(ids) == expected
    assert expected.endswith("<|im_start|>assistant\n")


# ---------------------------------------------------------------------------------------------------------------
# Awkward templates: fallbacks, and errors when nothing works

# Llama-3 layout, but it insists on ending with an assistant turn (as some training-only templates do).
ENDS_WITH_ASSISTANT = (
    "{% if messages[-1]['role'] != 'assistant' %}{{ raise_exception('the last message must be the assistant') }}"
    "{% endif %}{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
)


def test_template_refusing_a_lone_user_turn_is_handled_by_the_fallback(make_tokenizer: Build):
    tok = make_tokenizer("llama3", ENDS_WITH_ASSISTANT)
    with pytest.raises(Exception, match="last message must be the assistant"):
        tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    pre = derive_pre_query(tok)
    assert pre.text == preset("llama3").pre_query_template
    assert pre.stop[0] == "<|eot_id|>"
    assert user_header(tok) == "<|start_header_id|>user<|end_header_id|>\n\n"
    assert tok.decode(follow_up_prompt(tok, CHAT, None)).endswith("Seven.<|eot_id|>" + user_header(tok))


def test_template_reading_typed_content_parts_is_handled_by_the_fallback(make_tokenizer: Build):
    # SmolVLM's template expects content as a list of {"type": "text", ...} parts and renders plain strings as
    # nothing; the derivation retries with parts.
    tok = make_tokenizer("smolvlm", trl_template("smolvlm.jinja"))
    pre = derive_pre_query(tok)
    assert pre.text == "<|im_start|>User: "
    assert pre.stop[0] == "<end_of_utterance>"
    assert "Assistant:" in pre.stop  # a plain-text role header stops as its text


@pytest.mark.parametrize(
    ("chat_template", "message"),
    [
        (None, "no chat template"),
        ("{{ raise_exception('this template renders nothing') }}", "this template renders nothing"),
        ("{% for m in messages %}{{ m['content'] }}\n{% endfor %}", "renders nothing ahead of the user's text"),
        ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] | upper }}\n{% endfor %}", "does not appear"),
    ],
)
def test_unusable_template_raises_engine_error(make_tokenizer: Build, chat_template: str | None, message: str):
    tok = make_tokenizer("llama3", chat_template)
    with pytest.raises(EngineError, match=message):
        derive_pre_query(tok)


# ---------------------------------------------------------------------------------------------------------------
# Presets


def test_presets_cover_the_reference_families():
    assert {"llama3", "llama3.1", "llama3.3", "qwen2", "qwen2.5", "phi3", "gemma", "gemma2", "mistral"} <= set(PRESETS)
    for name, p in PRESETS.items():
        assert p.name == name
        assert p.pre_query_template and p.stop and p.provenance


def test_preset_values_follow_the_reference_scripts():
    llama31 = preset("llama3.1")
    assert (llama31.query_temperature, llama31.query_top_p) == (0.8, 1.0)
    assert (llama31.response_temperature, llama31.response_top_p) == (0.6, 0.9)
    assert (llama31.early_stop_newline, llama31.sanitize, llama31.max_tokens) == (False, True, 1024)
    llama3 = preset("llama3")
    assert (llama3.query_temperature, llama3.response_temperature, llama3.early_stop_newline) == (1.0, 0.0, True)
    assert llama3.stop_words == ("assistant",)
    assert preset("qwen2.5").query_temperature == 0.7
    gemma2 = preset("gemma2")
    assert (gemma2.early_stop_newline, gemma2.sanitize) == (False, True)
    assert preset("mistral").pre_query_template == "<s> [INST] "


def test_unknown_preset_is_a_usage_error_with_a_hint():
    with pytest.raises(UsageError, match=r"did you mean 'llama3\.1'\?"):
        preset("llama3.11")


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3"),
        ("meta-llama/Meta-Llama-3.1-70B-Instruct", "llama3.1"),
        ("meta-llama/Llama-3.3-70B-Instruct", "llama3.3"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5"),
        ("Qwen/Qwen2-72B-Instruct", "qwen2"),
        ("Qwen/Qwen1.5-7B-Chat", "qwen2"),
        ("microsoft/Phi-3-mini-4k-instruct", "phi3"),
        ("microsoft/Phi-3.5-mini-instruct", "phi3"),
        ("google/gemma-1.1-7b-it", "gemma"),
        ("google/gemma-2b-it", "gemma"),
        ("google/gemma-2-9b-it", "gemma2"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
        ("models/checkpoints/Qwen2.5-3B-Instruct/", "qwen2.5"),
        ("meta-llama/Llama-3.2-3B-Instruct", None),
        ("Qwen/Qwen3-8B", None),
        ("google/gemma-3-4b-it", None),
        ("microsoft/Phi-3-small-8k-instruct", None),
        ("gpt2", None),
    ],
)
def test_guess_family(model: str, family: str | None):
    assert guess_family(model) == family


def test_system_prompt_names_and_text():
    assert presets.system_prompt("math") == presets.MATH_SYSTEM_PROMPT
    assert set(presets.DOMAIN_SYSTEM_PROMPTS) == {"generic", "math", "code", "translation"}
    assert presets.system_prompt("Talk like a pirate.") == "Talk like a pirate."
    assert "follow-up" in presets.MULTI_TURN_SYSTEM_PROMPT
