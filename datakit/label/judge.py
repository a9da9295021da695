"""LLM-as-judge labels: pointwise ratings on a 1..N scale, and pairwise verdicts asked in both orders.

Both steps ask through structured output, so every answer the engine finishes is one the step can
read: a rating is a JSON object whose `rating` is one of the integers 1..N, a verdict is one of the
letters A and B (or `tie`). An answer that still cannot be read (cut off at `max_tokens`) fails its
row with the judge's raw text; no rating or verdict is ever made up.

The prompts are ours. The protocol follows the LLM-as-a-judge study (Zheng et al. 2023, MT-Bench):
single-answer grading on a 1-10 scale, and pairwise comparison asked twice with the replies in both
positions, because judges favour one position; a verdict that flips with the order is not a verdict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from datakit.engines.spec import ModelSpec
from datakit.generate.rows import request_seeds, seed_columns, turn_seed, with_columns
from datakit.label.pairing import preference_table, text_codes
from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import MapResult, MapStep
from datakit.pipeline.steps._arrow import require_columns

RATING_RUBRIC = (
    "Judge how well the reply serves the user: whether it is correct, helpful, relevant to what was asked, "
    "complete without padding, clearly written and safe. A reply that is wrong or ignores the request deserves "
    "the lowest rating; a reply an expert would be glad to have written deserves the highest."
)
PAIRWISE_RUBRIC = (
    "Decide which reply serves the user better: the one that is more correct, helpful, relevant to what was "
    "asked, complete without padding, clearly written and safe. The order in which the replies appear and their "
    "length must not sway you."
)


# ---------------------------------------------------------------------------------------------------------------
# Rendering conversations for the judge


def render(value: Any) -> str:
    """Text of a prompt or reply for a judge: text as is, a lone turn's content, several turns tagged by role."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    turns = list(value)
    if len(turns) == 1:
        return _content(turns[0])
    return "\n\n".join(f"[{m.get('role')}]\n{_content(m)}" for m in turns)


def _content(turn: Mapping[str, Any]) -> str:
    if turn.get("content"):
        return str(turn["content"])
    calls = turn.get("tool_calls")
    return json.dumps(calls, ensure_ascii=False) if calls else ""


def split_reply(messages: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """A conversation cut after its last user turn: (the context, the reply to judge)."""
    turns = list(messages or [])
    last_user = max((i for i, m in enumerate(turns) if m.get("role") == "user"), default=-1)
    return turns[:last_user + 1], turns[last_user + 1:]


# ---------------------------------------------------------------------------------------------------------------
# Pointwise ratings


def rating_schema(scale: int, reason: bool = False, reason_chars: int = 400) -> dict[str, Any]:
    """The JSON schema of a rating answer: {"rating": 1..scale}, with a short "reason" written first if asked."""
    properties: dict[str, Any] = {}
    if reason:
        properties["reason"] = {"type": "string", "maxLength": reason_chars}
    properties["rating"] = {"type": "integer", "enum": list(range(1, scale + 1))}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _opening(task: str, rubric: str, criteria: str) -> str:
    """The start of every judge prompt: the task, the rubric and any extra criteria."""
    extra = f"{criteria.strip()}\n" if criteria.strip() else ""
    return f"You are an impartial judge. {task}\n\n{rubric}\n{extra}"


def rating_prompt(context: Any, reply: Any, *, scale: int, rubric: str | None = None, criteria: str = "",
                  reason: bool = False) -> list[dict[str, str]]:
    """The conversation sent to the judge to rate one reply (our wording)."""
    answer = '{"reason": "<one or two sentences>", "rating": <number>}' if reason else '{"rating": <number>}'
    steps = "First give a short reason, then the rating. " if reason else ""
    text = (
        _opening("Rate the reply of an AI assistant to the conversation below.", rubric or RATING_RUBRIC, criteria)
        + f"\nRate the reply with a whole number from 1 (worst) to {scale} (best). {steps}"
        f"Answer with a JSON object: {answer}\n\n"
        f"<conversation>\n{render(context)}\n</conversation>\n\n<reply>\n{render(reply)}\n</reply>"
    )
    return [{"role": "user", "content": text}]


def read_rating(text: str, scale: int) -> tuple[int, str | None] | None:
    """The rating (and reason, if any) in a judge's answer, or None when it is not a valid answer."""
    try:
        # Grammar-constrained engines may leave raw control characters inside the reason string.
        data = json.loads(text, strict=False)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    rating = data.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= scale:
        return None
    reason = data.get("reason")
    return rating, reason if isinstance(reason, str) else None


@register("judge_score")
class JudgeScore(MapStep):
    """Rate responses with a judge model on a 1..`scale` scale (single-answer grading, MT-Bench style).

    Modes:
    - `ranked`: rows with `prompt` and `completions` get `scores`, one rating per completion (the
      `ranked` kind; `pair` then makes preference rows).
    - `messages`: rows with a `messages` conversation (the `sft` kind) get a `rating` of the reply after
      the last user turn.
    - `response`: rows with a prompt column and a response column get a `rating` of the response.

    Each rating is the mean of `samples` answers (sampled at `temperature`, seeded per row and
    completion, so a re-run or resumed run gives the same ratings). The judge sees our rubric (or
    `rubric`), with `criteria` appended, and answers {"rating": n} through a JSON schema; with `reason`
    it writes a short reason first (kept in `judge_reason`, from the first sample). A row any of whose
    answers cannot be read goes to the failed table with the judge's raw answer.
    Defaults: scale 10 and greedy answers, as in MT-Bench's single-answer grading (Zheng et al. 2023).
    """

    thread_safe = True
    uses_seed = True

    @dataclass(frozen=True)
    class Params:
        model: ModelSpec = param(help="the judge model (a name from the recipe's 'models', or a mapping)")
        mode: Literal["ranked", "messages", "response"] = param(
            "ranked", help="ranked: rate each of `completions`; messages: rate the last reply of `messages`; "
                           "response: rate `response_column` after `prompt_column`")
        prompt_column: str = param("prompt", help="response mode: the column with the prompt (text or turns)")
        response_column: str = param("completion", help="response mode: the column with the reply (text or turns)")
        column: str | None = param(None, help="output column (default: scores when ranked, else rating)")
        scale: int = param(10, help="ratings run from 1 to this (10 as in MT-Bench; 5 for a coarser scale)")
        rubric: str | None = param(None, help="replaces our rubric: what makes a reply good or bad")
        criteria: str = param("", help="extra criteria appended to the rubric (e.g. 'Answers must cite a source.')")
        reason: bool = param(False, help="ask for a short reason before the rating (kept in judge_reason)")
        reason_chars: int = param(400, help="longest reason in characters")
        samples: int = param(1, help="answers per rating, averaged (more than 1 needs temperature > 0)")
        temperature: float = param(0.0, help="judge sampling temperature (0: greedy)")
        max_tokens: int = param(256, help="longest judge answer in tokens")

        def __post_init__(self) -> None:
            if not 2 <= self.scale <= 100:
                raise ValueError(f"scale must be between 2 and 100, got {self.scale}")
            if self.samples < 1:
                raise ValueError(f"samples must be at least 1, got {self.samples}")
            if self.samples > 1 and self.temperature == 0:
                raise ValueError(f"samples ({self.samples}) above 1 needs temperature above 0: greedy answers "
                                 "repeat, so their mean is just one answer")
            if self.temperature < 0:
                raise ValueError(f"temperature must be 0 or more, got {self.temperature}")
            if self.max_tokens < 1 or self.reason_chars < 1:
                raise ValueError("max_tokens and reason_chars must be at least 1")
            if self.rubric is not None and not self.rubric.strip():
                raise ValueError("rubric is blank: leave it out to use ours")

    def setup(self) -> None:
        from datakit.engines import load_engine

        self.engine = load_engine(self.params.model)
        self.schema = rating_schema(self.params.scale, self.params.reason, self.params.reason_chars)

    def _items(self, batch: pa.RecordBatch) -> tuple[list[tuple[Any, list[Any]]], list[str]]:
        """Per row: (context, the replies to rate), and the columns the row's seed is drawn from."""
        p, step = self.params, self.context.step_id
        if p.mode == "ranked":
            require_columns(batch, ["prompt", "completions"], step, "mode")
            prompts = batch.column("prompt").to_pylist()
            completions = batch.column("completions").to_pylist()
            return [(c, list(r or [])) for c, r in zip(prompts, completions)], ["prompt", "completions"]
        if p.mode == "messages":
            require_columns(batch, ["messages"], step, "mode")
            cuts = [split_reply(m) for m in batch.column("messages").to_pylist()]
            return [(c, [r] if r else []) for c, r in cuts], ["messages"]
        require_columns(batch, [p.prompt_column], step, "prompt_column")
        require_columns(batch, [p.response_column], step, "response_column")
        contexts = batch.column(p.prompt_column).to_pylist()
        replies = batch.column(p.response_column).to_pylist()
        return [(c, [r] if r else []) for c, r in zip(contexts, replies)], [p.prompt_column, p.response_column]

    def process(self, batch: pa.RecordBatch) -> MapResult:
        from datakit.engines.base import SamplingParams

        p = self.params
        items, seed_from = self._items(batch)
        row_seeds = request_seeds(self.row_seeds(batch, seed_columns(batch, *seed_from)))
        owners, prompts, sampling = [], [], []
        for i, (context, replies) in enumerate(items):
            for j, reply in enumerate(replies):
                owners.append(i)
                prompts.append(rating_prompt(context, reply, scale=p.scale, rubric=p.rubric, criteria=p.criteria,
                                             reason=p.reason))
                sampling.append(SamplingParams(temperature=p.temperature, max_tokens=p.max_tokens, n=p.samples,
                                               seed=turn_seed(row_seeds[i], j, "rating"), json_schema=self.schema))
        generations = self.engine.generate(prompts, sampling) if prompts else []
        ratings: list[list[float]] = [[] for _ in items]
        reasons: list[list[str | None]] = [[] for _ in items]
        errors: dict[int, str] = {i: "no reply to rate" for i, (_, replies) in enumerate(items) if not replies}
        tokens = 0
        for i, generation in zip(owners, generations):
            tokens += generation.completion_tokens
            if i in errors:
                continue
            answers = [(c, read_rating(c.text, p.scale)) for c in generation.completions]
            bad = next((c for c, parsed in answers if parsed is None), None)
            if bad is not None:
                why = "cut off at max_tokens" if bad.finish_reason == "length" else "not a valid rating"
                errors[i] = f"judge answer {why} (completion {len(ratings[i])}): {bad.text[:200]!r}"
                continue
            ratings[i].append(float(np.mean([parsed[0] for _, parsed in answers if parsed])))
            reasons[i].append(answers[0][1][1] if answers[0][1] else None)
        kept = [i for i in range(len(items)) if i not in errors]
        table = pa.Table.from_batches([batch]).take(pa.array(kept, pa.int64()))
        ranked = p.mode == "ranked"
        name = p.column or ("scores" if ranked else "rating")
        columns: dict[str, pa.Array] = {
            name: (pa.array([ratings[i] for i in kept], pa.list_(pa.float64())) if ranked
                   else pa.array([ratings[i][0] for i in kept], pa.float64())),
        }
        if p.reason:
            columns["judge_reason"] = (pa.array([reasons[i] for i in kept], pa.list_(pa.string())) if ranked
                                       else pa.array([reasons[i][0] for i in kept], pa.string()))
        return MapResult(with_columns(table, columns), failed=sorted(errors.items()),
                         metrics={"tokens": tokens, "requests": len(prompts)})


# ---------------------------------------------------------------------------------------------------------------
# Pairwise verdicts


def pairwise_prompt(context: Any, first: Any, second: Any, *, ties: bool = False, rubric: str | None = None,
                    criteria: str = "") -> list[dict[str, str]]:
    """The conversation sent to the judge to compare reply A (`first`) with reply B (`second`) (our wording)."""
    answer = "A or B, or tie when neither is better" if ties else "A or B"
    text = (
        _opening("Compare two replies of AI assistants to the conversation below.", rubric or PAIRWISE_RUBRIC,
                 criteria)
        + f"\n<conversation>\n{render(context)}\n</conversation>\n\n"
        f"<reply A>\n{render(first)}\n</reply A>\n\n<reply B>\n{render(second)}\n</reply B>\n\n"
        f"Which reply is better? Answer with {answer}."
    )
    return [{"role": "user", "content": text}]


@dataclass(frozen=True)
class Comparison:
    """One pair to judge: the row it comes from, and its two replies in incoming order (first = presumed better)."""

    row: int
    first: Any
    second: Any


def vote(answer: str, swapped: bool) -> int | None:
    """Which reply an answer prefers, in incoming order: 0 (first), 1 (second) or None (tie)."""
    if answer == "tie":
        return None
    picked_a = answer == "A"
    return (1 if picked_a else 0) if swapped else (0 if picked_a else 1)


@register("judge_preference")
class JudgePreference(MapStep):
    """Ask a judge which of two replies is better, in both orders, and order preference pairs by its verdict.

    Modes:
    - `preference`: rows with `prompt`, `chosen`, `rejected`; the incoming order is chosen first.
    - `ranked`: rows with `prompt` and `completions` (and optional `scores`); every pair of distinct
      completions is judged, the higher-scored (else the earlier) first. One row may give many pairs,
      and drops are counted per pair.

    With `swap` (default) each pair is asked twice, with the replies in both positions (MT-Bench's
    answer to position bias). Both answers naming the same reply (or both `tie`) are consistent and
    give the verdict; answers that flip with the order are inconsistent: dropped as `inconsistent`, or
    with `inconsistent: tie` taken as a tie (MT-Bench's rule). Ties (allowed answers with `ties`) are
    dropped as `tie`, or kept with `keep_ties` in incoming order. Pairs of equal texts are dropped as
    `identical` without asking, repeated pairs of texts in one ranked row as `duplicate`, and ranked rows
    with fewer than two completions as `too_few_completions`. A row any of whose answers cannot be read
    goes to the failed table with the judge's raw answer.

    Output rows are `preference` rows: `chosen` is the reply the judge prefers, `id` a content hash of
    (prompt, chosen, rejected), `judge_verdict` is `kept` (incoming order confirmed), `swapped`
    (reversed) or `tie`, `judge_consistent` whether both orders agreed (null without swap) and
    `judge_answers` the raw answers (incoming order as A first). Incoming `score_chosen`,
    `score_rejected` and `margin` are removed: they ranked by another measure. Metrics: `pairs`
    judged, `consistent`, `inconsistent`, `swapped`, `ties`, `requests` sent and `tokens`.
    """

    thread_safe = True
    uses_seed = True

    @dataclass(frozen=True)
    class Params:
        model: ModelSpec = param(help="the judge model (a name from the recipe's 'models', or a mapping)")
        mode: Literal["preference", "ranked"] = param(
            "preference", help="preference: judge chosen against rejected; ranked: judge every pair of completions")
        swap: bool = param(True, help="ask in both orders and keep only verdicts that survive the swap")
        ties: bool = param(False, help="let the judge answer 'tie' as well as A or B")
        inconsistent: Literal["drop", "tie"] = param("drop", help="verdicts that flip with the order: drop them, "
                                                                  "or count them as ties")
        keep_ties: bool = param(False, help="keep tied pairs (incoming order, judge_verdict 'tie') instead of "
                                            "dropping them")
        rubric: str | None = param(None, help="replaces our rubric: what makes one reply better than another")
        criteria: str = param("", help="extra criteria appended to the rubric")
        temperature: float = param(0.0, help="judge sampling temperature (0: greedy)")
        max_tokens: int = param(4, help="longest judge answer in tokens (the answer is one word)")

        def __post_init__(self) -> None:
            if self.inconsistent == "tie" and not self.swap:
                raise ValueError("inconsistent 'tie' needs swap: true (only a pair asked in both orders can be "
                                 "inconsistent)")
            if self.temperature < 0:
                raise ValueError(f"temperature must be 0 or more, got {self.temperature}")
            if self.max_tokens < 1:
                raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
            if self.rubric is not None and not self.rubric.strip():
                raise ValueError("rubric is blank: leave it out to use ours")

    def setup(self) -> None:
        from datakit.engines import load_engine

        self.engine = load_engine(self.params.model)
        self.options = ("A", "B", "tie") if self.params.ties else ("A", "B")

    def _comparisons(self, batch: pa.RecordBatch) -> tuple[list[Comparison], dict[str, int], list[str]]:
        """The pairs to judge, the pairs left out by reason, and the columns row seeds are drawn from."""
        step = self.context.step_id
        dropped = {"identical": 0, "duplicate": 0, "too_few_completions": 0}
        pairs: list[Comparison] = []
        if self.params.mode == "preference":
            require_columns(batch, ["prompt", "chosen", "rejected"], step, "mode")
            for i, (a, b) in enumerate(zip(batch.column("chosen").to_pylist(), batch.column("rejected").to_pylist())):
                if a == b:
                    dropped["identical"] += 1
                else:
                    pairs.append(Comparison(i, a, b))
            return pairs, dropped, ["prompt", "chosen", "rejected"]
        require_columns(batch, ["prompt", "completions"], step, "mode")
        completions = batch.column("completions").to_pylist()
        scores = (batch.column("scores").to_pylist() if "scores" in batch.schema.names else [None] * len(completions))
        for i, (options, values) in enumerate(zip(completions, scores)):
            options = list(options or [])
            if len(options) < 2:
                dropped["too_few_completions"] += 1
                continue
            usable = values is not None and len(values) == len(options) and all(v is not None for v in values)
            codes = text_codes(options)
            seen: set[tuple[int, int]] = set()
            for a, b in zip(*np.triu_indices(len(options), 1)):
                a, b = int(a), int(b)
                if usable and values[b] > values[a]:
                    a, b = b, a
                key = (min(codes[a], codes[b]), max(codes[a], codes[b]))
                if codes[a] == codes[b]:
                    dropped["identical"] += 1
                elif key in seen:
                    dropped["duplicate"] += 1
                else:
                    seen.add(key)
                    pairs.append(Comparison(i, options[a], options[b]))
        return pairs, dropped, ["prompt", "completions"]

    def process(self, batch: pa.RecordBatch) -> MapResult:
        from datakit.engines.base import SamplingParams

        p = self.params
        pairs, dropped, seed_from = self._comparisons(batch)
        row_seeds = request_seeds(self.row_seeds(batch, seed_columns(batch, *seed_from)))
        contexts = batch.column("prompt").to_pylist()
        orders = (False, True) if p.swap else (False,)
        prompts, sampling = [], []
        for k, pair in enumerate(pairs):
            for swapped in orders:
                a, b = (pair.second, pair.first) if swapped else (pair.first, pair.second)
                prompts.append(pairwise_prompt(contexts[pair.row], a, b, ties=p.ties, rubric=p.rubric,
                                               criteria=p.criteria))
                sampling.append(SamplingParams(temperature=p.temperature, max_tokens=p.max_tokens,
                                               seed=turn_seed(row_seeds[pair.row], k, "ba" if swapped else "ab"),
                                               choice=self.options))
        generations = self.engine.generate(prompts, sampling) if prompts else []
        tokens = sum(g.completion_tokens for g in generations)
        answers = [g.completions[0] for g in generations]

        errors: dict[int, str] = {}
        for k, pair in enumerate(pairs):
            for n, swapped in enumerate(orders):
                answer = answers[k * len(orders) + n]
                if answer.text.strip() not in self.options and pair.row not in errors:
                    why = "cut off at max_tokens" if answer.finish_reason == "length" else "not one of the options"
                    order = "swapped" if swapped else "incoming"
                    errors[pair.row] = f"judge answer {why} ({order} order): {answer.text[:200]!r}"

        counts = {"pairs": 0, "consistent": 0, "inconsistent": 0, "swapped": 0, "ties": 0}
        rows, chosen, rejected, verdicts, consistent, raw = [], [], [], [], [], []
        for k, pair in enumerate(pairs):
            if pair.row in errors:
                continue
            said = [answers[k * len(orders) + n].text.strip() for n in range(len(orders))]
            votes = [vote(text, swapped) for text, swapped in zip(said, orders)]
            counts["pairs"] += 1
            agreed = None if not p.swap else votes[0] == votes[1]
            winner = votes[0]
            if agreed is False:
                counts["inconsistent"] += 1
                if p.inconsistent == "drop":
                    dropped["inconsistent"] = dropped.get("inconsistent", 0) + 1
                    continue
                winner = None
            elif agreed:
                counts["consistent"] += 1
            if winner is None:
                counts["ties"] += 1
                if not p.keep_ties:
                    dropped["tie"] = dropped.get("tie", 0) + 1
                    continue
            better, worse = (pair.second, pair.first) if winner == 1 else (pair.first, pair.second)
            verdict = "tie" if winner is None else ("swapped" if winner == 1 else "kept")
            counts["swapped"] += verdict == "swapped"
            rows.append(pair.row)
            chosen.append(better)
            rejected.append(worse)
            verdicts.append(verdict)
            consistent.append(agreed)
            raw.append(said)

        reply_type = (batch.schema.field("chosen").type if p.mode == "preference"
                      else batch.schema.field("completions").type.value_type)
        table = preference_table(batch, rows, chosen, rejected, reply_type, {
            "judge_verdict": pa.array(verdicts, pa.string()),
            "judge_consistent": pa.array(consistent, pa.bool_()),
            "judge_answers": pa.array(raw, pa.list_(pa.string())),
        }, drop=("completions", "scores", "score_chosen", "score_rejected", "margin"))
        metrics = {**counts, "requests": len(prompts), "tokens": tokens}
        return MapResult(table, failed=sorted(errors.items()), dropped={k: v for k, v in dropped.items() if v},
                         metrics=metrics)
