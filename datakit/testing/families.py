"""Chat formats of the tiny test models: special tokens, stop tokens and a Jinja chat template per family."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Family:
    """One chat format: its special tokens, the tokenizer's roles for them, and the model architecture it uses."""

    name: str
    specials: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str
    # Tokens that end a reply, for generation_config.json: the end-of-turn token first.
    stops: tuple[str, ...]
    # Whether encoding with add_special_tokens=True prepends BOS, as the real tokenizer does.
    adds_bos: bool
    template: str
    architecture: str


# The templates render exactly what each real model's template renders for plain text conversations.
# Assistant turns sit in {% generation %} blocks (no effect on the text) so that transformers can return
# an assistant-token mask, which TRL's assistant_only_loss needs.

_LLAMA3 = r"""
{%- for message in messages -%}
    {%- if loop.first -%}{{- bos_token -}}{%- endif -%}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' -}}
    {%- if message['role'] == 'assistant' -%}
        {%- generation -%}{{- message['content'] | trim + '<|eot_id|>' -}}{%- endgeneration -%}
    {%- else -%}
        {{- message['content'] | trim + '<|eot_id|>' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}
"""

_CHATML_TURNS = r"""
{%- for message in messages -%}
    {{- '<|im_start|>' + message['role'] + '\n' -}}
    {%- if message['role'] == 'assistant' -%}
        {%- generation -%}{{- message['content'] + '<|im_end|>' -}}{%- endgeneration -%}{{- '\n' -}}
    {%- else -%}
        {{- message['content'] + '<|im_end|>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}
"""

_QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

_QWEN25 = (
    r"""
{%- if not messages or messages[0]['role'] != 'system' -%}
    {{- '<|im_start|>system\n""" + _QWEN_SYSTEM + r"""<|im_end|>\n' -}}
{%- endif -%}"""
    + _CHATML_TURNS
)

# Gemma has no system role: a system message becomes the start of the first user turn.
_GEMMA = r"""
{{- bos_token -}}
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set prefix = messages[0]['content'] | trim + '\n\n' -%}
    {%- set turns = messages[1:] -%}
{%- else -%}
    {%- set prefix = '' -%}
    {%- set turns = messages -%}
{%- endif -%}
{%- for message in turns -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}
    {%- endif -%}
    {%- if message['role'] == 'assistant' -%}
        {{- '<start_of_turn>model\n' -}}
        {%- generation -%}{{- message['content'] | trim + '<end_of_turn>' -}}{%- endgeneration -%}{{- '\n' -}}
    {%- else -%}
        {{- '<start_of_turn>' + message['role'] + '\n' + (prefix if loop.first else '') -}}
        {{- message['content'] | trim + '<end_of_turn>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}
"""

# Like Phi-3.5: an empty system message is dropped, and a conversation rendered without a generation
# prompt ends in <|endoftext|>.
_PHI3 = r"""
{%- for message in messages -%}
    {%- if message['role'] == 'system' and message['content'] -%}
        {{- '<|system|>\n' + message['content'] + '<|end|>\n' -}}
    {%- elif message['role'] == 'user' -%}
        {{- '<|user|>\n' + message['content'] + '<|end|>\n' -}}
    {%- elif message['role'] == 'assistant' -%}
        {{- '<|assistant|>\n' -}}
        {%- generation -%}{{- message['content'] + '<|end|>' -}}{%- endgeneration -%}{{- '\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- else -%}{{- '<|endoftext|>' -}}{%- endif -%}
"""

_CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

_ALL = (
    Family(
        name="llama3",
        specials=("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                  "<|eot_id|>", "<|finetune_right_pad_id|>"),
        bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>",
        stops=("<|eot_id|>", "<|end_of_text|>"), adds_bos=True, template=_LLAMA3.strip(), architecture="llama",
    ),
    Family(
        name="chatml", specials=_CHATML_SPECIALS, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
        stops=("<|im_end|>", "<|endoftext|>"), adds_bos=False, template=_CHATML_TURNS.strip(), architecture="qwen2",
    ),
    Family(
        name="qwen2.5", specials=_CHATML_SPECIALS, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
        stops=("<|im_end|>", "<|endoftext|>"), adds_bos=False, template=_QWEN25.strip(), architecture="qwen2",
    ),
    Family(
        name="gemma", specials=("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
        bos="<bos>", eos="<end_of_turn>", pad="<pad>",
        stops=("<end_of_turn>", "<eos>"), adds_bos=True, template=_GEMMA.strip(), architecture="gemma2",
    ),
    Family(
        name="phi3",
        specials=("<s>", "<|endoftext|>", "<|assistant|>", "<|end|>", "<|system|>", "<|user|>"),
        bos="<s>", eos="<|end|>", pad="<|endoftext|>",
        stops=("<|end|>", "<|endoftext|>"), adds_bos=False, template=_PHI3.strip(), architecture="phi3",
    ),
)

FAMILY_SPECS: dict[str, Family] = {f.name: f for f in _ALL}
FAMILIES: tuple[str, ...] = tuple(FAMILY_SPECS)
