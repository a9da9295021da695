"""Builds `datakit/examples/curate_sft.jsonl`, the input of `pipelines/curate.yaml`: real responses with planted faults.

The base rows are IFEval prompts with GPT-4 responses (Apache-2.0, `tests/verify/data/ifeval/`). Planted rows copy
or damage some of them in ways each curation step is meant to catch; the `origin` column says which, so tests can
check every step against what was planted (copies name their original in `copy_of`):

- `exact`: a copy with its case and spacing changed (normalized exact dedup)
- `near`: a copy with a few words changed (MinHash)
- `reworded`: the same answer with a new opening sentence and its last paragraph left out (semantic dedup)
- `refusal`, `boilerplate`: an assistant refusal, or web boilerplate (phrase filter)
- `repeated`: one line repeated many times (repetition filter)
- `symbols`: mostly symbols (symbol filter)
- `colon`: an instruction cut off after a ':' (format filter)
- `short`: a one-word answer (length filter)

A `quality` column labels the damaged rows `bad` and the rest `good`, so the example can also train the quality
classifier of `quality_filter` (`datakit classifier train ... --label-column quality`), standing in for labels a
judge or a reward model would give.

    python -m tests.curate.example_data   # rewrites the file
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "verify" / "data" / "ifeval"
OUTPUT = ROOT / "datakit" / "examples" / "curate_sft.jsonl"
BASE_ROWS = 160
SEED = 7

REFUSALS = [
    "I'm sorry, but I can't help with that request.",
    "As an AI language model, I cannot provide personal opinions on this topic.",
    "I apologize, but I am unable to assist with that.",
    "I’m sorry, but I can’t comply with this request.",
]
BOILERPLATE = [
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore.",
    "Click here to subscribe to our newsletter and never miss an update!",
    "This website uses cookies to improve your experience. By continuing you accept our cookie policy.",
]
OPENINGS = ["Sure, here is what you asked for.", "Certainly! Below is my answer.", "Of course. Here you go."]
FILLER = ["really", "quite", "truly", "simply", "very", "rather"]
DAMAGED = {"refusal", "boilerplate", "repeated", "symbols", "colon", "short"}


def _conversation(prompt: str, response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def base_rows() -> list[dict[str, Any]]:
    """The first `BASE_ROWS` IFEval prompts whose GPT-4 response is not empty, as SFT rows."""
    with open(FIXTURE / "responses_gpt4.jsonl", encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f if line.strip()]
    rows = []
    for pair in pairs:
        if pair["response"].strip() and len(rows) < BASE_ROWS:
            rows.append({"id": f"ifeval-{len(rows):04d}", "origin": "ifeval", "copy_of": None, "quality": "good",
                         "messages": _conversation(pair["prompt"], pair["response"])})
    return rows


def _long(rows: list[dict[str, Any]], words: int) -> list[dict[str, Any]]:
    """Rows whose response has at least `words` words and more than one paragraph."""
    answers = [(r, r["messages"][1]["content"]) for r in rows]
    return [r for r, text in answers if len(text.split()) >= words and "\n\n" in text]


def planted_rows(rows: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Damaged or copied rows, each with the `origin` of its fault."""
    planted: list[tuple[str, str, str, str | None]] = []
    english = [r for r in rows if r["messages"][1]["content"].isascii()]
    for row in rng.sample(english, 8):
        prompt, response = (m["content"] for m in row["messages"])
        planted.append(("exact", "  " + prompt.upper() + " ", response.replace(" ", "  ").upper(), row["id"]))
    for row in rng.sample(_long(english, 250), 8):
        prompt, response = (m["content"] for m in row["messages"])
        words = response.split(" ")
        for k in rng.sample(range(len(words)), 3):
            words[k] = rng.choice(FILLER)
        planted.append(("near", prompt, " ".join(words), row["id"]))
    for row in rng.sample(_long(english, 150), 6):
        prompt, response = (m["content"] for m in row["messages"])
        paragraphs = response.split("\n\n")
        planted.append(("reworded", prompt, rng.choice(OPENINGS) + "\n\n" + "\n\n".join(paragraphs[:-1]), row["id"]))
    for text in REFUSALS:
        planted.append(("refusal", rng.choice(rows)["messages"][0]["content"], text, None))
    for text in BOILERPLATE:
        row = rng.choice(english)
        planted.append(("boilerplate", row["messages"][0]["content"], row["messages"][1]["content"] + "\n\n" + text,
                        None))
    for _ in range(4):
        row = rng.choice(english)
        line = row["messages"][1]["content"].split("\n")[0][:80] or "The same line again."
        planted.append(("repeated", row["messages"][0]["content"], "\n".join([line] * 12), None))
    for _ in range(3):
        junk = " ".join(rng.choice(["###", "***", "=>", "|||", "~~", "$$", "%%"]) for _ in range(40))
        planted.append(("symbols", rng.choice(rows)["messages"][0]["content"], junk + " ok", None))
    for lead in ("Summarize the following text:", "Translate this into French:", "Here is my essay, fix it:"):
        planted.append(("colon", lead, "Please paste the text you would like me to work on.", None))
    for word in ("Yes.", "No.", "Ok."):
        planted.append(("short", rng.choice(rows)["messages"][0]["content"], word, None))
    return [{"id": f"planted-{k:04d}", "origin": origin, "copy_of": source,
             "quality": "bad" if origin in DAMAGED else "good", "messages": _conversation(prompt, response)}
            for k, (origin, prompt, response, source) in enumerate(planted)]


def build_rows() -> list[dict[str, Any]]:
    """The example's rows: base rows and planted rows, mixed in a seeded order."""
    rng = random.Random(SEED)
    rows = base_rows()
    everything = rows + planted_rows(rows, rng)
    rng.shuffle(everything)
    return everything


def render(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


if __name__ == "__main__":
    OUTPUT.write_text(render(build_rows()), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
