"""Per-family Magpie settings from the reference implementation (magpie-align/magpie), kept as data."""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType

from datakit.errors import UsageError
from datakit.pipeline.params import did_you_mean


@dataclass(frozen=True)
class Preset:
    """One model family's reference settings for instruction (query) and response generation.

    `stop` holds the reference's stop tokens; `stop_words` its extra plain-word stops (`stop_tokens_assistant`),
    kept apart because a plain word such as "assistant" also cuts instructions that merely mention it.
    `early_stop_newline` adds "\\n" as a stop, which keeps only the first line of each instruction.
    """

    name: str
    pre_query_template: str
    stop: tuple[str, ...]
    stop_words: tuple[str, ...]
    query_temperature: float
    query_top_p: float
    response_temperature: float
    response_top_p: float
    early_stop_newline: bool
    sanitize: bool
    max_tokens: int | None
    provenance: str


_LLAMA3_PRE_QUERY = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
_LLAMA3_STOP = ("<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>")
_QWEN_STOP = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
_QWEN_WORDS = ("Assistant", "assistant")
_QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Sampling is from the reference's per-model scripts; templates and stops from its configs/model_configs.json.
_SINGLE_LINE = {"early_stop_newline": True, "sanitize": False, "max_tokens": None}
_MULTI_LINE_SANITIZED = {"early_stop_newline": False, "sanitize": True}
_GREEDY_RESPONSE = {"response_temperature": 0.0, "response_top_p": 1.0}

_TABLE: tuple[Preset, ...] = (
    Preset(
        name="llama3", pre_query_template=_LLAMA3_PRE_QUERY, stop=_LLAMA3_STOP, stop_words=("assistant",),
        query_temperature=1.0, query_top_p=1.0, **_GREEDY_RESPONSE, **_SINGLE_LINE,
        provenance="Llama-3 8B/70B Instruct config and scripts",
    ),
    Preset(
        name="llama3.1", pre_query_template=_LLAMA3_PRE_QUERY, stop=_LLAMA3_STOP, stop_words=("assistant",),
        query_temperature=0.8, query_top_p=1.0, response_temperature=0.6, response_top_p=0.9,
        **_MULTI_LINE_SANITIZED, max_tokens=1024,
        provenance="Llama-3.1-8B script (70B samples queries at 0.9); it also bans markdown headers as first token",
    ),
    Preset(
        name="llama3.3", pre_query_template=_LLAMA3_PRE_QUERY, stop=_LLAMA3_STOP, stop_words=("assistant",),
        query_temperature=1.0, query_top_p=1.0, **_GREEDY_RESPONSE, **_MULTI_LINE_SANITIZED, max_tokens=1024,
        provenance="Llama-3.3-70B script; same template and stops as Llama-3",
    ),
    Preset(
        name="qwen2", pre_query_template="<|im_start|>user\n", stop=_QWEN_STOP, stop_words=_QWEN_WORDS,
        query_temperature=1.0, query_top_p=1.0, **_GREEDY_RESPONSE, **_SINGLE_LINE,
        provenance="Qwen2, Qwen2-Math and Qwen1.5 config; no system block, unlike Qwen2-Instruct's own template",
    ),
    Preset(
        name="qwen2.5",
        pre_query_template=f"<|im_start|>system\n{_QWEN25_DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n",
        stop=_QWEN_STOP, stop_words=_QWEN_WORDS,
        query_temperature=0.7, query_top_p=1.0, **_GREEDY_RESPONSE, **_SINGLE_LINE,
        provenance="Qwen2.5 3B/7B/14B scripts (32B/72B sample queries at 0.6); default system kept (magpie #28)",
    ),
    Preset(
        name="phi3", pre_query_template="<s> <|user|>\n",
        stop=("</s>", "<s>", "<unk>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"),
        stop_words=(), query_temperature=1.0, query_top_p=1.0, **_GREEDY_RESPONSE, **_SINGLE_LINE,
        provenance="Phi-3 mini/medium and Phi-3.5-mini config; the space after <s> is sentencepiece's",
    ),
    Preset(
        name="gemma", pre_query_template="<bos><start_of_turn>user\n",
        stop=("<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"), stop_words=(),
        query_temperature=1.0, query_top_p=1.0, **_GREEDY_RESPONSE, **_SINGLE_LINE,
        provenance="Gemma-1.1 config",
    ),
    Preset(
        name="gemma2", pre_query_template="<bos><start_of_turn>user\n\n",
        stop=("<eos>", "<bos>", "<end_of_turn>"), stop_words=(),
        query_temperature=1.0, query_top_p=1.0, **_GREEDY_RESPONSE, **_MULTI_LINE_SANITIZED, max_tokens=None,
        provenance="Gemma-2 9B/27B scripts (HF engine, n=10); its chat template renders one newline, not two",
    ),
    Preset(
        name="mistral", pre_query_template="<s> [INST] ", stop=("</s>", "[INST]", "[/INST]"), stop_words=(),
        query_temperature=1.0, query_top_p=1.0, **_GREEDY_RESPONSE, **_SINGLE_LINE,
        provenance="Mistral-7B-Instruct-v0.3 config; marked 'works, may need processing'",
    ),
    Preset(
        name="llama2", pre_query_template="<s> [INST] ", stop=("</s>",), stop_words=(),
        query_temperature=1.0, query_top_p=1.0, **_GREEDY_RESPONSE, **_SINGLE_LINE,
        provenance="Llama-2-chat config; marked 'works, may need processing'",
    ),
    Preset(
        name="yi1.5", pre_query_template="<|startoftext|><|im_start|>user\n",
        stop=("<|startoftext|>", "<|endoftext|>", "<|im_end|>"), stop_words=(),
        query_temperature=1.0, query_top_p=1.0, **_GREEDY_RESPONSE, **_SINGLE_LINE,
        provenance="Yi-1.5-34B-Chat config",
    ),
)  # fmt: skip

PRESETS: MappingProxyType[str, Preset] = MappingProxyType({p.name: p for p in _TABLE})


def preset(name: str) -> Preset:
    """The reference settings for family `name` (see `PRESETS`); UsageError naming the closest family otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(
            f"unknown Magpie preset {name!r}{did_you_mean(name, PRESETS)}; known: {', '.join(PRESETS)}"
        ) from None


# Checked in order against the model name (the last path component, lower-cased); more specific patterns first.
# Families the reference never ran (Llama-3.2, Qwen3, Gemma-3, Phi-3-small, ...) deliberately match nothing.
_FAMILY_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), family)
    for pattern, family in (
        (r"llama-?3\.3(?!\d)", "llama3.3"),
        (r"llama-?3\.1(?!\d)", "llama3.1"),
        (r"llama-?3(?![.\d])", "llama3"),
        (r"llama-?2-\d+b-chat", "llama2"),
        (r"qwen-?2\.5(?!\d)", "qwen2.5"),
        (r"qwen-?(?:2(?![.\d])|1\.5(?!\d))", "qwen2"),
        (r"phi-?3(?:\.5)?-(?:mini|medium)", "phi3"),
        (r"gemma-?2-\d", "gemma2"),
        (r"gemma-(?:1\.1-)?\d+b", "gemma"),
        (r"mistral-7b-instruct", "mistral"),
        (r"yi-1\.5-", "yi1.5"),
    )
)


def guess_family(model_name_or_path: str) -> str | None:
    """The preset family of a model id or local path such as "Qwen/Qwen2.5-7B-Instruct", or None when unknown.

    Only the last path component is read, so a folder name higher up cannot mislead it.
    """
    name = model_name_or_path.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower()
    for pattern, family in _FAMILY_PATTERNS:
        if pattern.search(name):
            return family
    return None


GENERIC_SYSTEM_PROMPT = (
    "You are a capable and friendly AI assistant. Answer the user's requests accurately and helpfully."
)

MATH_SYSTEM_PROMPT = (
    "You are an AI assistant specialised in mathematics. Users bring you problems from arithmetic through algebra, "
    "geometry, probability and calculus to proofs; you reason through each one carefully, step by step, and give "
    "a correct final answer."
)

CODE_SYSTEM_PROMPT = (
    "You are an AI assistant for software development. Users ask you to write, explain, review and debug code in "
    "many programming languages; you reply with correct, idiomatic code and say briefly why it works."
)

TRANSLATION_SYSTEM_PROMPT = (
    "You are an AI assistant for translation. Users give you text and ask for it in another language; you render "
    "its meaning, tone and register faithfully and fluently."
)

DOMAIN_SYSTEM_PROMPTS: MappingProxyType[str, str] = MappingProxyType(
    {
        "generic": GENERIC_SYSTEM_PROMPT,
        "math": MATH_SYSTEM_PROMPT,
        "code": CODE_SYSTEM_PROMPT,
        "translation": TRANSLATION_SYSTEM_PROMPT,
    }
)

MULTI_TURN_SYSTEM_PROMPT = (
    "You are a helpful AI assistant. The user will talk with you over several rounds: after each of your answers "
    "they may ask a follow-up question that builds on what was said so far. Answer every turn in the light of the "
    "whole conversation."
)


def system_prompt(name_or_text: str) -> str:
    """The domain system prompt called `name_or_text` (generic, math, code, translation), else the text itself.

    Lets a recipe say `system_prompt: math` or spell out its own prompt with the same parameter.
    """
    return DOMAIN_SYSTEM_PROMPTS.get(name_or_text, name_or_text)
