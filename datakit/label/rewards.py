"""Reward-model scores as a step: one score per conversation, or one per completion of ranked rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from datakit.engines.spec import RewardSpec
from datakit.generate.rows import with_columns
from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import MapResult, MapStep
from datakit.pipeline.steps._arrow import require_columns


@register("reward")
class Reward(MapStep):
    """Score rows with a reward model (a sequence classifier with one output), in large sorted batches.

    `mode: conversation` scores the `messages` column into a float column (`instruct_reward` by
    default, the Magpie name). `mode: ranked` scores `prompt` + each of `completions` into a
    `scores` list: the `ranked` record kind, ready for pairing.
    """

    thread_safe = False

    @dataclass(frozen=True)
    class Params:
        model: RewardSpec = param(help="the reward model (a name from the recipe's 'models', or a mapping)")
        mode: Literal["conversation", "ranked"] = param("conversation",
                                                         help="conversation: score `messages`; ranked: score each "
                                                              "of `completions` after `prompt`")
        column: str | None = param(None, help="output column (default: instruct_reward, or scores when ranked)")

    def setup(self) -> None:
        from datakit.engines import load_reward_model

        self.model = load_reward_model(self.params.model)

    def process(self, batch: pa.RecordBatch) -> MapResult:
        step = self.context.step_id
        if self.params.mode == "conversation":
            require_columns(batch, ["messages"], step, "mode")
            convs = batch.column("messages").to_pylist()
            scores = self.model.score(convs)
            values: Any = pa.array(np.asarray(scores, dtype=np.float64))
            name = self.params.column or "instruct_reward"
        else:
            require_columns(batch, ["prompt", "completions"], step, "mode")
            prompts = batch.column("prompt").to_pylist()
            completions = batch.column("completions").to_pylist()
            convs = [_as_turns(p, "user") + _as_turns(c, "assistant") for p, cs in zip(prompts, completions) for c in cs]
            flat = np.asarray(self.model.score(convs), dtype=np.float64) if convs else np.empty(0)
            offsets = np.cumsum([0] + [len(cs) for cs in completions])
            values = pa.array([flat[offsets[i]:offsets[i + 1]].tolist() for i in range(len(completions))],
                              pa.list_(pa.float64()))
            name = self.params.column or "scores"
        bad = [i for i, s in enumerate(_finite_rows(values)) if not s]
        table = pa.Table.from_batches([batch])
        table = with_columns(table, {name: values})
        if bad:
            keep = np.ones(batch.num_rows, dtype=bool)
            keep[bad] = False
            table = table.filter(pa.array(keep))
        return MapResult(table, failed=[(i, "the reward model returned a non-finite score") for i in bad])


def _as_turns(value: Any, role: str) -> list[dict[str, str]]:
    """A prompt or completion as turns: conversational values pass through, plain strings become one turn."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _finite_rows(values: pa.Array) -> list[bool]:
    if pa.types.is_list(values.type):
        return [all(np.isfinite(v)) for v in values.to_pylist()]
    return list(np.isfinite(values.to_numpy(zero_copy_only=False)))
