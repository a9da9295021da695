"""Magpie prompts derived from a tokenizer's own chat template: pre-query template, stops, follow-up and reply prompts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datakit.errors import EngineError, UsageError

# Private-use code points: no tokenizer vocabulary or model output contains them, and `trim` leaves them alone,
# so finding one in a rendering pins down exactly where a message's text went.
_USER = "\ue000magpie-user\ue001"
_USER_2 = "\ue000magpie-user-2\ue001"
_REPLY = "\ue000magpie-reply\ue001"
_REPLY_2 = "\ue000magpie-reply-2\ue001"
_SYSTEM = "\ue000magpie-system\ue001"

# What templates raise when they dislike a conversation, besides jinja2's TemplateError (from `raise_exception`):
# these come from templates indexing message fields in a shape they do not expect.
_SHAPE_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError)

Message = Mapping[str, Any]


@dataclass(frozen=True)
class PreQuery:
    """The prompt that makes an aligned model write a user turn, with the stops that end that turn."""

    text: str
    token_ids: tuple[int, ...]
    stop: tuple[str, ...]
    stop_token_ids: tuple[int, ...]


class _Refused(Exception):
    """The chat template would not render one particular conversation."""


def _render(
    tokenizer: Any,
    conversation: list[dict[str, Any]],
    template_kwargs: Mapping[str, Any] | None,
    *,
    generation_prompt: bool = False,
) -> str:
    from jinja2 import TemplateError  # transformers' own chat-template dependency, not datakit's core

    if not getattr(tokenizer, "chat_template", None):
        raise EngineError(f"tokenizer {_name(tokenizer)} has no chat template to derive Magpie prompts from")
    try:
        return tokenizer.apply_chat_template(
            conversation,
            tokenize=False,
            add_generation_prompt=generation_prompt,
            **dict(template_kwargs or {}),
        )
    except (TemplateError, *_SHAPE_ERRORS) as exc:
        raise _Refused(f"{type(exc).__name__}: {exc}") from exc


def _name(tokenizer: Any) -> str:
    return repr(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def _as_parts(message: dict[str, Any]) -> dict[str, Any]:
    # Multimodal templates read content as a list of typed parts and garble a plain string.
    content = message["content"]
    if isinstance(content, str):
        return {**message, "content": [{"type": "text", "text": content}]}
    return message


def _render_shapes(
    tokenizer: Any, conversation: list[dict[str, Any]], template_kwargs: Mapping[str, Any] | None, must_contain: str
) -> str:
    """Render `conversation` with string content, else with typed parts; the first rendering holding `must_contain`."""
    problems: list[str] = []
    for shaped in (conversation, [_as_parts(m) for m in conversation]):
        try:
            rendered = _render(tokenizer, shaped, template_kwargs)
        except _Refused as exc:
            problems.append(str(exc))
            continue
        if must_contain in rendered:
            return rendered
        problems.append("the message text does not appear verbatim in the rendering")
    raise _Refused("; ".join(dict.fromkeys(problems)))


def _text_before_next_user_turn(
    tokenizer: Any, before: list[dict[str, Any]], template_kwargs: Mapping[str, Any] | None, where: str
) -> str:
    """What the template writes after `before` and ahead of the text of a further user turn.

    Some templates only accept conversations that end with an assistant turn, so a closing assistant turn is
    tried next; it follows the cut point and so cannot change the text before it.
    """
    problems: list[str] = []
    user = {"role": "user", "content": _USER}
    for closing in ([], [{"role": "assistant", "content": _REPLY}]):
        try:
            rendered = _render_shapes(tokenizer, [*before, user, *closing], template_kwargs, _USER)
        except _Refused as exc:
            problems.append(str(exc))
            continue
        return rendered[: rendered.index(_USER)]
    raise EngineError(
        f"the chat template of tokenizer {_name(tokenizer)} cannot render a user turn {where} "
        f"({'; '.join(dict.fromkeys(problems))})"
    )


def _system_turn(system_prompt: str | None) -> list[dict[str, Any]]:
    return [] if system_prompt is None else [{"role": "system", "content": system_prompt}]


def _encode(tokenizer: Any, text: str) -> tuple[int, ...]:
    # The rendered text already holds whatever BOS the template wants; adding special tokens would double it.
    return tuple(tokenizer.encode(text, add_special_tokens=False))


def derive_pre_query(
    tokenizer: Any, system_prompt: str | None = None, *, template_kwargs: Mapping[str, Any] | None = None
) -> PreQuery:
    """The Magpie pre-query template of `tokenizer`'s chat template: everything it renders ahead of the user's text.

    Derived rather than looked up so any chat model works: a sentinel user message is rendered and the text is
    cut right before it. A default system block the template injects stays in (Qwen2.5's, Llama-3.1's date
    block), as does a BOS the template renders. `system_prompt` is rendered as a system turn, the way the template
    does it; `""` is an empty system turn, `None` none at all. `template_kwargs` go to the template (e.g.
    `date_string` for Llama-3.1/3.2). Raises EngineError when the template cannot render such a conversation.
    """
    where = "at the start of a chat" if system_prompt is None else "after a system turn"
    text = _text_before_next_user_turn(tokenizer, _system_turn(system_prompt), template_kwargs, where)
    if not text:
        raise EngineError(
            f"the chat template of tokenizer {_name(tokenizer)} renders nothing ahead of the user's text, "
            "so there is no pre-query template to prompt with"
        )
    stop, stop_ids = derive_stops(tokenizer, template_kwargs=template_kwargs)
    return PreQuery(text=text, token_ids=_encode(tokenizer, text), stop=stop, stop_token_ids=stop_ids)


def _atoms(text: str, specials: re.Pattern[str] | None) -> list[str]:
    """`text` as special tokens and single characters, so comparisons never cut a special token in half."""
    if specials is None:
        return list(text)
    atoms: list[str] = []
    at = 0
    for match in specials.finditer(text):
        atoms.extend(text[at : match.start()])
        atoms.append(match.group())
        at = match.end()
    atoms.extend(text[at:])
    return atoms


def _special_tokens(tokenizer: Any) -> set[str]:
    # Added tokens are atomic when tokenizing whether or not they are flagged special; chat markers are among them.
    tokens = set(tokenizer.get_added_vocab())
    tokens.update(tokenizer.all_special_tokens)
    return {t for t in tokens if t}


def _special_pattern(tokens: set[str]) -> re.Pattern[str] | None:
    if not tokens:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def _after_common_prefix(text: str, other: str, specials: re.Pattern[str] | None) -> str:
    """`text` less the leading special tokens and characters it shares with `other`."""
    a, b = _atoms(text, specials), _atoms(other, specials)
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return "".join(a[n:])


@dataclass(frozen=True)
class _Turns:
    """The pieces of a chat template between turns, read off one rendered user/assistant/user/assistant chat."""

    assistant_end: str  # what follows the last assistant text (end-of-turn marker, then possibly more)
    assistant_header: str
    user_header: str
    system_header: str | None  # None when the template has no system turn
    specials: set[str]
    pattern: re.Pattern[str] | None


def _turns(tokenizer: Any, template_kwargs: Mapping[str, Any] | None) -> _Turns:
    chat = [
        {"role": "user", "content": _USER},
        {"role": "assistant", "content": _REPLY},
        {"role": "user", "content": _USER_2},
        {"role": "assistant", "content": _REPLY_2},
    ]
    try:
        rendered = _render_shapes(tokenizer, chat, template_kwargs, _REPLY_2)
    except _Refused as exc:
        raise EngineError(
            f"the chat template of tokenizer {_name(tokenizer)} cannot render a user/assistant conversation ({exc})"
        ) from None
    specials = _special_tokens(tokenizer)
    pattern = _special_pattern(specials)
    user_to_reply = rendered[rendered.index(_USER) + len(_USER) : rendered.index(_REPLY)]
    reply_to_user = rendered[rendered.index(_REPLY) + len(_REPLY) : rendered.index(_USER_2)]
    assistant_end = rendered[rendered.index(_REPLY_2) + len(_REPLY_2) :]

    # A user turn's closing is read from a conversation ending on it; templates that refuse to end on a user turn
    # are assumed to close user turns the way they close assistant turns.
    try:
        lone = _render_shapes(tokenizer, [{"role": "user", "content": _USER}], template_kwargs, _USER)
        user_end = lone[lone.index(_USER) + len(_USER) :]
    except _Refused:
        user_end = assistant_end

    try:
        with_system = _render_shapes(
            tokenizer, [{"role": "system", "content": _SYSTEM}, *chat[:2]], template_kwargs, _SYSTEM
        )
        system_header: str | None = with_system[: with_system.index(_SYSTEM)]
    except _Refused:
        system_header = None

    return _Turns(
        assistant_end=assistant_end,
        assistant_header=_after_common_prefix(user_to_reply, user_end, pattern),
        user_header=_after_common_prefix(reply_to_user, assistant_end, pattern),
        system_header=system_header,
        specials=specials,
        pattern=pattern,
    )


def user_header(tokenizer: Any, *, template_kwargs: Mapping[str, Any] | None = None) -> str:
    """The text that opens a user turn in the middle of a conversation (Magpie's `mt_append_template`).

    Read off a rendered two-exchange chat: what sits between the first reply and the second user message, less the
    assistant's end-of-turn text. Shown in records and tests; prompts themselves come from `follow_up_prompt`.
    """
    header = _turns(tokenizer, template_kwargs).user_header
    if not header:
        raise EngineError(f"the chat template of tokenizer {_name(tokenizer)} writes no header ahead of user turns")
    return header


def derive_stops(
    tokenizer: Any, *, template_kwargs: Mapping[str, Any] | None = None
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Stop strings for a sampled user turn, and the ids of those that are single tokens.

    The end-of-turn marker is the special text right after an assistant message; a model that keeps going past
    the instruction would next open a turn, so the special tokens in the role headers stop it too, and so does
    the tokenizer's eos. A header without special tokens (plain `USER:`-style templates) stops as its text.
    """
    turns = _turns(tokenizer, template_kwargs)
    stops: list[str] = []

    leading = _leading(_atoms(turns.assistant_end, turns.pattern), turns.specials)
    if leading:
        stops.extend(leading)
    else:
        plain = turns.assistant_end.split("\n", 1)[0].strip()
        if plain:
            stops.append(plain)

    bos = getattr(tokenizer, "bos_token", None)
    headers = [(turns.assistant_header, True), (turns.user_header, True)]
    if turns.system_header is not None:
        # Whatever precedes the system text, of which only the special tokens mark a turn; BOS opens the
        # sequence, not a turn.
        headers.append((turns.system_header, False))
    for header, plain_counts in headers:
        marks = [a for a in _atoms(header, turns.pattern) if a in turns.specials and a != bos]
        if marks:
            stops.extend(marks)
        elif plain_counts and header.strip():
            stops.append(header.strip())

    eos = getattr(tokenizer, "eos_token", None)
    if eos:
        stops.append(eos)
    unique = tuple(dict.fromkeys(stops))
    ids = tuple(
        tokenizer.convert_tokens_to_ids(s) for s in unique if s in turns.specials and len(_encode(tokenizer, s)) == 1
    )
    return unique, ids


def _leading(atoms: list[str], specials: set[str]) -> list[str]:
    run: list[str] = []
    for atom in atoms:
        if atom not in specials:
            break
        run.append(atom)
    return run


def _check_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise UsageError(f"message {i} is not a mapping with 'role' and 'content': {message!r}")
        out.append(dict(message))
    return out


def follow_up_prompt(
    tokenizer: Any,
    messages: Sequence[Message],
    system_prompt: str | None,
    *,
    template_kwargs: Mapping[str, Any] | None = None,
) -> tuple[int, ...]:
    """Token ids that make the model write the next user turn of `messages` (Magpie multi-turn).

    The conversation so far, under `system_prompt` when given, rendered without a generation prompt and followed
    by the user header. It is taken as the text ahead of a sentinel next user turn, which equals "conversation +
    user header" for ordinary templates and stays right for those that end a finished chat with eos (Phi-3) or
    render earlier turns differently once another user turn follows.
    """
    history = _check_messages(messages)
    if system_prompt is not None and history and history[0]["role"] == "system":
        raise UsageError("follow_up_prompt got a system_prompt and messages that already open with a system turn")
    before = _system_turn(system_prompt) + history
    text = _text_before_next_user_turn(tokenizer, before, template_kwargs, "after this conversation")
    return _encode(tokenizer, text)


def response_prompt(
    tokenizer: Any, messages: Sequence[Message], *, template_kwargs: Mapping[str, Any] | None = None
) -> tuple[int, ...]:
    """Token ids of the ordinary chat prompt for answering `messages`: the chat template with a generation prompt."""
    try:
        text = _render(tokenizer, _check_messages(messages), template_kwargs, generation_prompt=True)
    except _Refused as exc:
        raise EngineError(
            f"the chat template of tokenizer {_name(tokenizer)} cannot render this conversation ({exc})"
        ) from exc
    return _encode(tokenizer, text)
