"""A corpus of broken rows, one rule each, with the exact errors datakit must report for them.

Each case is (schema, row, expected errors as (field, message)). The test writes every case of a schema
into one JSON Lines file between valid rows, so each error must name the right line too.
"""

from __future__ import annotations


def U(text):  # noqa: N802 - short builders keep the table readable
    return {"role": "user", "content": text}


def A(text):  # noqa: N802
    return {"role": "assistant", "content": text}


def S(text):  # noqa: N802
    return {"role": "system", "content": text}


def T(text):  # noqa: N802
    return {"role": "tool", "content": text}


def pref(prompt=None, chosen=None, rejected=None, **extra):
    row = {"prompt": [U("What is 2 + 2?")] if prompt is None else prompt, "chosen": [A("4")] if chosen is None else chosen,
           "rejected": [A("5")] if rejected is None else rejected,
           "score_chosen": None, "score_rejected": None}
    row.update(extra)
    return row


def mm_text(role, text):
    return {"role": role, "content": [{"type": "text", "text": text}]}


def mm(images=None, prompt=None, chosen=None, rejected=None):
    return {
        "images": images if images is not None else [{"bytes": None, "path": "cat.png"}],
        "prompt": prompt or [{"role": "user", "content": [{"type": "image"},
                                                          {"type": "text", "text": "What animal is this?"}]}],
        "chosen": chosen or [mm_text("assistant", "A cat.")],
        "rejected": rejected or [mm_text("assistant", "A dog.")],
    }


VALID = {
    "preference": pref(),
    "sft": {"messages": [U("Hi"), A("Hello!")]},
    "ranked": {"prompt": [U("Pick a number")], "completions": [[A("1")], [A("2")]], "scores": [0.5, 0.25]},
    "unpaired_preference": {"prompt": [U("Capital of France?")], "completion": [A("Paris.")], "label": True},
    "multimodal_preference": mm(),
    "stepwise_supervision": {"prompt": "Add 2 and 3", "completions": ["2 + 3", " = 5"], "labels": [True, True]},
    "instruction": {"instruction": "Write a limerick about tea.", "system_prompt": None},
    "implicit_preference": {"chosen": [U("Hi"), A("Hello!")], "rejected": [U("Hi"), A("Go away.")]},
    "prompt_completion": {"prompt": "The capital of France is", "completion": " Paris."},
}

ROLE_ENUM = "is not one of: system, user, assistant, tool"

CASES: list[tuple[str, dict, list[tuple[str, str]]]] = [
    # preference (conversational)
    ("preference", pref(prompt=[{"role": "usr", "content": "Hi"}]), [("prompt[0].role", f"'usr' {ROLE_ENUM}")]),
    ("preference", pref(prompt=[U("   ")]), [("prompt[0].content", "is blank (whitespace only)")]),
    ("preference", pref(prompt=[U("")]), [("prompt[0].content", "is empty")]),
    ("preference", pref(rejected=[A("\u00a0\u2003\u3000")]), [("rejected[0].content", "is blank (whitespace only)")]),
    ("preference", pref(chosen=[A("Same")], rejected=[A("Same")]), [("rejected", "is identical to chosen")]),
    ("preference", pref(prompt=[U("Hi"), A("Hello")]),
     [("prompt[1].role", "the last turn must be a user turn, not 'assistant'")]),
    ("preference", pref(prompt=[A("Hello"), U("Hi")]),
     [("prompt[0].role", "the first turn must be a system or user turn, not 'assistant'")]),
    ("preference", pref(prompt=[U("Hi"), U("Anyone?")]),
     [("prompt[1].role", "a user turn cannot follow a user turn (after user comes assistant)")]),
    ("preference", pref(prompt=[U("Hi"), S("Be brief."), U("Well?")]),
     [("prompt[1].role", "a system turn cannot follow a user turn (after user comes assistant)")]),
    ("preference", pref(chosen=[U("4")]),
     [("chosen[0].role", "the first turn must be an assistant turn, not 'user'"),
      ("chosen[0].role", "the last turn must be an assistant turn, not 'user'")]),
    ("preference", pref(prompt=[]), [("prompt", "is empty")]),
    ("preference", {**pref(), "chosen": None}, [("chosen", "is missing")]),
    ("preference", pref(rejected=[{"role": "assistant", "content": None}]), [("rejected[0]", "needs content or tool_calls")]),
    ("preference", pref(prompt=[{"role": None, "content": "Hi"}]), [("prompt[0].role", "is missing")]),
    ("preference", pref(prompt=[None]), [("prompt[0]", "is null")]),
    ("preference", pref(score_chosen=0.1, score_rejected=0.9), [("score_chosen", "0.1 is below score_rejected (0.9)")]),
    ("preference", pref(prompt=[{"role": "human", "content": " "}], chosen=[A("x")], rejected=[A("x")]),
     [("prompt[0].role", f"'human' {ROLE_ENUM}"), ("prompt[0].content", "is blank (whitespace only)"),
      ("rejected", "is identical to chosen")]),
    # sft (conversational)
    ("sft", {"messages": [U("Hi"), A("Hello"), U("Bye")]},
     [("messages[2].role", "the last turn must be an assistant turn, not 'user'")]),
    ("sft", {"messages": [U("Weather?"), T("sunny"), A("Sunny.")]},
     [("messages[1].role", "a tool turn cannot follow a user turn (after user comes assistant)")]),
    ("sft", {"messages": [S("Be kind."), S("Be brief."), U("Hi"), A("Hello")]},
     [("messages[1].role", "a system turn cannot follow a system turn (after system comes user)")]),
    ("sft", {"messages": None}, [("messages", "is missing")]),
    # ranked (conversational)
    ("ranked", {"prompt": [U("Pick")], "completions": [[A("1")], [A("2")], [A("3")]], "scores": [0.1, 0.2]},
     [("scores", "has 2 items but completions has 3")]),
    ("ranked", {"prompt": [U("Pick")], "completions": [], "scores": []},
     [("completions", "is empty"), ("scores", "is empty")]),
    ("ranked", {"prompt": [U("Pick")], "completions": [[A("1")], [U("2")]], "scores": [0.1, None]},
     [("completions[1][0].role", "the first turn must be an assistant turn, not 'user'"),
      ("completions[1][0].role", "the last turn must be an assistant turn, not 'user'"),
      ("scores[1]", "is null")]),
    # unpaired preference (conversational)
    ("unpaired_preference", {"prompt": [U("Capital of France?")], "completion": [A("Lyon.")], "label": None},
     [("label", "is missing")]),
    # multimodal preference
    ("multimodal_preference", mm(images=[{"bytes": None, "path": "a.png"}, {"bytes": None, "path": "b.png"}]),
     [("images", "holds 2 image(s) but prompt has 1 image part(s)")]),
    ("multimodal_preference", mm(prompt=[{"role": "user", "content": [{"type": "image"},
                                                                      {"type": "text", "text": None}]}]),
     [("prompt[0].content[1].text", "is missing")]),
    ("multimodal_preference", mm(images=[{"bytes": None, "path": None}]), [("images[0]", "needs bytes or path")]),
    ("multimodal_preference", mm(chosen=[{"role": "assistant", "content": [{"type": "video", "text": None}]}]),
     [("chosen[0].content[0].type", "'video' is not one of: text, image")]),
    # stepwise supervision
    ("stepwise_supervision", {"prompt": "Add 2 and 3", "completions": ["2 + 3", " = 5"], "labels": [True]},
     [("labels", "has 1 items but completions has 2")]),
    ("stepwise_supervision", {"prompt": "Add 2 and 3", "completions": ["2 + 3", "  "], "labels": [True, False]},
     [("completions[1]", "is blank (whitespace only)")]),
    # instruction
    ("instruction", {"instruction": "\t\n", "system_prompt": None}, [("instruction", "is blank (whitespace only)")]),
    # implicit preference (conversational)
    ("implicit_preference", {"chosen": [U("Hi"), A("Hello!")], "rejected": [U("Hi")]},
     [("rejected[0].role", "the last turn must be an assistant turn, not 'user'")]),
    ("implicit_preference", {"chosen": [U("Hi"), A("Hello!")], "rejected": [U("Hi"), A("Hello!")]},
     [("rejected", "is identical to chosen")]),
    # prompt-completion (standard)
    ("prompt_completion", {"prompt": "The capital of France is", "completion": ""}, [("completion", "is empty")]),
]
