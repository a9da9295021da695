"""Likelihood over-optimisation diagnostics for preference training, logged with the trainer's own metrics.

Source: Shi, Land, Locatelli, Geist and Bartolo, "Understanding likelihood over-optimisation in direct alignment
algorithms" (arXiv 2410.11677), sections 4.1 and 4.4. The policy is run with teacher forcing over the chosen
completions of held-out prompts, and at every completion position the next-token distribution p is summarised by

- top-k entropy ``H_k = -sum_{i<=k} q_i log2 q_i``, where q is p's k largest probabilities renormalised to sum to 1
  (the paper says "the distribution over the top k tokens"; renormalising is the natural reading), and
- top-k probability mass ``M_k = sum_{i<=k} p_i`` over the same, unnormalised, probabilities,

with k = 10, averaged over positions and then over examples. Early in DPO/IPO training H_k rises while the chosen
likelihood falls, which is healthy. Two signals mean over-optimisation: H_k *reversing* (falling after it rose; the
turn coincides with the peak win rate, so stop or regularise there) and M_k *diminishing* (the distribution
flattens, tokens outside the top 10 get sampled: randomness, language switching). The paper evaluates every 50
steps. `PreferenceDiagnostics` measures both, plus the policy's chosen/rejected log-probabilities and margins, and
warns through the `datakit.train` loggers when a signal fires.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from transformers import TrainerCallback

from datakit.errors import UsageError
from datakit.pipeline.params import ParamError, build_params, param

if TYPE_CHECKING:
    import datasets
    import torch

logger = logging.getLogger(__name__)

PREFIX = "diagnostics/"

# ---------------------------------------------------------------------------------------------------------------
# Pure measurements
# ---------------------------------------------------------------------------------------------------------------


def _per_position_topk(logits: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example mean H_k (bits) and M_k over the positions `mask` selects, for the examples that have any."""
    import torch

    if logits.dim() != 3 or mask.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (batch, positions, vocab) and mask (batch, positions); got "
                         f"{tuple(logits.shape)} and {tuple(mask.shape)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    mask = mask.bool()
    counts = mask.sum(dim=1)
    if not bool(counts.any()):
        raise ValueError("mask selects no positions: there is no completion token to measure")
    # Only the selected positions go to float32: a full (batch, positions, vocab) copy can be gigabytes.
    selected = logits[mask].float()
    top = selected.topk(min(k, selected.shape[-1]), dim=-1).values
    log_top = top - selected.logsumexp(dim=-1, keepdim=True)  # log p_i of the k most probable tokens
    mass = log_top.exp().sum(dim=-1)
    log_q = log_top.log_softmax(dim=-1)  # renormalised over the top k
    entropy = -(log_q.exp() * log_q).sum(dim=-1) / math.log(2)
    rows = mask.nonzero()[:, 0]
    has = counts > 0
    denominator = counts.clamp(min=1).to(selected.dtype)
    per_entropy = torch.zeros(mask.shape[0], dtype=selected.dtype, device=selected.device).index_add_(0, rows, entropy)
    per_mass = torch.zeros(mask.shape[0], dtype=selected.dtype, device=selected.device).index_add_(0, rows, mass)
    return (per_entropy / denominator)[has], (per_mass / denominator)[has]


def topk_entropy(logits: torch.Tensor, mask: torch.Tensor, k: int = 10) -> float:
    """Top-k entropy H_k in bits, averaged over the masked positions of each example, then over examples.

    ``H_k = -sum_{i=1..k} q_i log2 q_i`` with q the k largest next-token probabilities renormalised to sum to 1
    (Shi et al. 2024, arXiv 2410.11677, section 4.1; k = 10 and base 2 as there). It is log2(k) for a uniform
    distribution and 0 for a one-hot one. `logits` is (batch, positions, vocab); `mask` (batch, positions) is true
    where the row of logits is the distribution over a completion token, so prompt and padding positions are left
    out. Examples with no masked position are skipped.
    """
    entropy, _ = _per_position_topk(logits, mask, k)
    return float(entropy.mean())


def topk_mass(logits: torch.Tensor, mask: torch.Tensor, k: int = 10) -> float:
    """Top-k probability mass M_k, averaged over the masked positions of each example, then over examples.

    ``M_k = sum_{i=1..k} p_i`` over the k largest next-token probabilities, not renormalised (Shi et al. 2024,
    arXiv 2410.11677, section 4.1). It is k/V for a uniform distribution over V tokens and close to 1 for a peaked
    one; a falling M_k means the policy spreads probability beyond its top k tokens. Shapes as in `topk_entropy`.
    """
    _, mass = _per_position_topk(logits, mask, k)
    return float(mass.mean())


class SequenceLogprobs(NamedTuple):
    """Per-example log-probabilities of the completion tokens: their sum and their mean per token."""

    total: torch.Tensor
    mean: torch.Tensor


class Margins(NamedTuple):
    """Chosen-minus-rejected summed log-prob margins of the policy: their mean and the share that is positive."""

    mean: float
    positive: float


def collate(sequences: Sequence[tuple[Sequence[int], int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad (token ids, completion start) pairs into `input_ids`, `attention_mask` and `completion_mask`."""
    import torch

    if not sequences:
        raise ValueError("collate needs at least one sequence")
    width = max(len(ids) for ids, _ in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    completion = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, (ids, start) in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        attention[row, : len(ids)] = 1
        completion[row, start: len(ids)] = True
    return {"input_ids": input_ids, "attention_mask": attention, "completion_mask": completion}


def _forward(model: Any, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-token logits, their targets and the completion mask, shifted so that row t predicts token t + 1."""
    device = next(model.parameters()).device
    input_ids = batch["input_ids"].to(device)
    attention = batch["attention_mask"].to(device)
    logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits
    return logits[:, :-1], input_ids[:, 1:], batch["completion_mask"][:, 1:].to(device) & attention[:, 1:].bool()


def _logprobs(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> SequenceLogprobs:
    import torch

    selected = logits[mask].float()  # completion positions only, as in `_per_position_topk`
    picked = selected.gather(-1, targets[mask].unsqueeze(-1)).squeeze(-1) - selected.logsumexp(dim=-1)
    total = torch.zeros(mask.shape[0], dtype=picked.dtype, device=picked.device).index_add_(0, mask.nonzero()[:, 0],
                                                                                            picked)
    return SequenceLogprobs(total, total / mask.sum(dim=1).clamp(min=1))


def sequence_logprobs(model: Any, batch: Mapping[str, torch.Tensor]) -> SequenceLogprobs:
    """Summed and per-token mean log-probabilities of the completion tokens under `model`, one value per example.

    `batch` is what `collate` builds (`input_ids`, `attention_mask`, `completion_mask`); the model is run as it is
    (call it under `torch.no_grad()` and in eval mode for measurements). The per-token mean is the paper's chosen
    log-likelihood (Shi et al. 2024, section 4.1: mean per token, not normalised by a reference model).
    """
    return _logprobs(*_forward(model, batch))


def _margin_stats(chosen_total: torch.Tensor, rejected_total: torch.Tensor) -> Margins:
    margin = chosen_total - rejected_total
    return Margins(float(margin.mean()), float((margin > 0).float().mean()))


def margins(model: Any, pairs: Sequence[TokenizedExample], *, pad_token_id: int, batch_size: int = 8) -> Margins:
    """Mean of `log pi(chosen) - log pi(rejected)` (summed over completion tokens) and the share of pairs above 0.

    The share of positive margins is the implicit accuracy of the policy alone, without DPO's reference model: how
    often it already prefers the chosen completion. Only examples with a rejected completion count.
    """
    import torch

    paired = [pair for pair in pairs if pair.rejected is not None]
    if not paired:
        raise ValueError("margins needs at least one example with a rejected completion")
    chosen, rejected = [], []
    for start in range(0, len(paired), batch_size):
        chunk = paired[start: start + batch_size]
        chosen.append(sequence_logprobs(model, collate([p.chosen for p in chunk], pad_token_id)).total)
        rejected.append(sequence_logprobs(model, collate([p.rejected for p in chunk], pad_token_id)).total)
    return _margin_stats(torch.cat(chosen), torch.cat(rejected))


# ---------------------------------------------------------------------------------------------------------------
# Held-out examples
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TokenizedExample:
    """A held-out example: the chosen sequence and, for pairs, the rejected one, as (token ids, completion start)."""

    chosen: tuple[tuple[int, ...], int]
    rejected: tuple[tuple[int, ...], int] | None = None


def _clean_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    # Arrow structs carry every field of the schema; a null `tool_calls` would still count as "defined" in Jinja.
    return [{key: value for key, value in message.items() if value is not None} for message in messages]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _tokenize(tokenizer: Any, prompt: Any, completion: Any, tools: Any, max_length: int | None
              ) -> tuple[tuple[int, ...], int] | None:
    """(ids, completion start) for prompt + completion, or None when truncation leaves no completion token.

    Conversational rows go through the chat template, the completion being what follows the prompt rendered with
    `add_generation_prompt=True`; plain text gets the EOS token appended, as TRL's DPOTrainer does. The completion
    starts where the tokenized prompt and prompt + completion diverge, since tokens can merge across the boundary.
    """
    if isinstance(prompt, list):
        if not isinstance(completion, list):
            raise UsageError("a conversational prompt needs a conversational completion (a list of messages)")
        tools = json.loads(tools) if isinstance(tools, str) else tools
        prompt_messages = _clean_messages(prompt)
        prompt_text = tokenizer.apply_chat_template(prompt_messages, tools=tools, add_generation_prompt=True,
                                                    tokenize=False)
        full_text = tokenizer.apply_chat_template(prompt_messages + _clean_messages(completion), tools=tools,
                                                  tokenize=False)
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    else:
        eos = tokenizer.eos_token or ""
        text = completion if completion.endswith(eos) else completion + eos
        prompt_ids = tokenizer(prompt)["input_ids"]
        full_ids = tokenizer(prompt + text)["input_ids"]
    start = _common_prefix(prompt_ids, full_ids)
    if max_length is not None:
        full_ids = full_ids[:max_length]
    if len(full_ids) <= max(start, 1):  # the first token is never predicted, so it cannot be measured
        return None
    return tuple(full_ids), start


def tokenize_examples(rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int | None = None
                      ) -> list[TokenizedExample]:
    """Tokenize held-out rows `{prompt, chosen, rejected?, tools?}` (conversational or plain text).

    Rows whose chosen completion is truncated away by `max_length` are skipped; a rejected completion that is
    truncated away only loses the pair's margin.
    """
    examples = []
    skipped = 0
    for row in rows:
        chosen = _tokenize(tokenizer, row["prompt"], row["chosen"], row.get("tools"), max_length)
        if chosen is None:
            skipped += 1
            continue
        rejected = row.get("rejected")
        if rejected is not None:
            rejected = _tokenize(tokenizer, row["prompt"], rejected, row.get("tools"), max_length)
        examples.append(TokenizedExample(chosen, rejected))
    if skipped:
        logger.info("diagnostics: %d held-out example(s) skipped: the prompt fills max_length=%s", skipped,
                    max_length)
    return examples


# ---------------------------------------------------------------------------------------------------------------
# The callback
# ---------------------------------------------------------------------------------------------------------------


class PreferenceDiagnostics(TrainerCallback):
    """Log top-k entropy, top-k mass and the policy's margins on held-out pairs, and warn on over-optimisation.

    Every `every_n_steps` optimizer steps (50 as in Shi et al. 2024), once before the first step (the reference
    for `mass_drop`) and at the end of training, the model is run in eval mode under `torch.no_grad()` over the
    first `max_examples` held-out examples and these metrics are logged as one entry of the trainer's log, so they
    land in `trainer.state.log_history`, the console and every reporting integration (TensorBoard in
    `logging_dir`, ...):

    - `diagnostics/topk_entropy`, `diagnostics/topk_mass`: H_k and M_k over the chosen completions;
    - `diagnostics/chosen_logp`, `diagnostics/rejected_logp`: mean per-token log-probabilities;
    - `diagnostics/margin_mean`, `diagnostics/margin_positive`: summed chosen-minus-rejected log-prob margin and the
      share of positive margins (rejected and margin metrics only when examples have a rejected completion);
    - `diagnostics/entropy_reversal`: 1 when H_k is more than `entropy_drop` bits below its running maximum (the
      paper's reversal signal), else 0;
    - `diagnostics/mass_decline`: 1 when M_k is below `min_mass` or more than `mass_drop` below its first value
      (the paper's diminishing-mass signal), else 0.

    A signal that fires is also logged as a warning. The paper gives no numeric thresholds: 0.05 bits and 0.05 of
    probability mass are datakit's defaults, small next to the log2(10) = 3.3-bit and 1.0 ranges. Works with
    peft-wrapped models (the adapter is what is measured). Add it with `attach(trainer)`, which registers it and
    lets it log through the trainer; a resumed run picks up the running maximum and first mass from the restored
    log history.
    """

    def __init__(self, pairs: Sequence[Mapping[str, Any]], tokenizer: Any, *, every_n_steps: int = 50,
                 top_k: int = 10, max_examples: int = 64, max_length: int | None = 1024, batch_size: int = 8,
                 entropy_drop: float = 0.05, min_mass: float | None = None, mass_drop: float | None = 0.05) -> None:
        for name, value in (("every_n_steps", every_n_steps), ("top_k", top_k), ("max_examples", max_examples),
                            ("batch_size", batch_size)):
            if value < 1:
                raise UsageError(f"{name} must be at least 1, got {value}")
        self.examples = tokenize_examples(list(pairs)[:max_examples], tokenizer, max_length)
        if not self.examples:
            raise UsageError("no held-out example left to measure: give pairs whose completions fit max_length")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = pad if pad is not None else 0
        self.every_n_steps = every_n_steps
        self.top_k = top_k
        self.batch_size = batch_size
        self.entropy_drop = entropy_drop
        self.min_mass = min_mass
        self.mass_drop = mass_drop
        self.trainer: Any = None
        self._max_entropy: float | None = None
        self._first_mass: float | None = None
        self._done: set[int] = set()
        self._start_step = 0
        self.holdout_indices: list[int] = []

    def attach(self, trainer: Any) -> PreferenceDiagnostics:
        """Register with `trainer` (once) and log through it; returns self."""
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        self.trainer = trainer
        return self

    def measure(self, model: Any) -> dict[str, float]:
        """The diagnostics metrics of `model` on the held-out examples, without the warning flags."""
        import torch

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return self._measure(model)
        finally:
            model.train(was_training)

    def _measure(self, model: Any) -> dict[str, float]:
        import torch

        entropy, mass, chosen, rejected = [], [], [], []
        for start in range(0, len(self.examples), self.batch_size):
            chunk = self.examples[start: start + self.batch_size]
            logits, targets, mask = _forward(model, collate([e.chosen for e in chunk], self.pad_token_id))
            h, m = _per_position_topk(logits, mask, self.top_k)
            entropy.append(h)
            mass.append(m)
            chosen.append(_logprobs(logits, targets, mask))
            del logits
            paired = [e.rejected for e in chunk if e.rejected is not None]
            if paired:
                rejected.append(sequence_logprobs(model, collate(paired, self.pad_token_id)))
        chosen_total = torch.cat([c.total for c in chosen])
        metrics = {"topk_entropy": float(torch.cat(entropy).mean()), "topk_mass": float(torch.cat(mass).mean()),
                   "chosen_logp": float(torch.cat([c.mean for c in chosen]).mean())}
        if rejected:
            has_pair = torch.tensor([e.rejected is not None for e in self.examples], device=chosen_total.device)
            rejected_total = torch.cat([r.total for r in rejected])
            metrics["rejected_logp"] = float(torch.cat([r.mean for r in rejected]).mean())
            metrics["margin_mean"], metrics["margin_positive"] = _margin_stats(chosen_total[has_pair],
                                                                                rejected_total)
        return {PREFIX + key: value for key, value in metrics.items()}

    def _signals(self, metrics: dict[str, float], step: int, warn: bool) -> dict[str, float]:
        """Update the running maximum and first mass; the 0/1 signal metrics, warning on those that fire."""
        entropy, mass = metrics[PREFIX + "topk_entropy"], metrics[PREFIX + "topk_mass"]
        self._max_entropy = entropy if self._max_entropy is None else max(self._max_entropy, entropy)
        if self._first_mass is None:
            self._first_mass = mass
        reversal = entropy < self._max_entropy - self.entropy_drop
        reasons = []
        if self.min_mass is not None and mass < self.min_mass:
            reasons.append(f"below min_mass={self.min_mass:g}")
        if self.mass_drop is not None and mass < self._first_mass - self.mass_drop:
            reasons.append(f"{self._first_mass - mass:.3f} below its first value {self._first_mass:.3f} "
                           f"(mass_drop={self.mass_drop:g})")
        if warn and reversal:
            logger.warning("step %d: top-k entropy reversal: H_k = %.3f bits, %.3f below its maximum %.3f "
                           "(entropy_drop=%g); the chosen completions lose rank: likely over-optimisation, "
                           "consider stopping here", step, entropy, self._max_entropy - entropy,
                           self._max_entropy, self.entropy_drop)
        if warn and reasons:
            logger.warning("step %d: top-k probability mass diminishing: M_k = %.3f, %s; the policy spreads "
                           "probability beyond its top %d tokens", step, mass, "; ".join(reasons), self.top_k)
        return {PREFIX + "entropy_reversal": float(reversal), PREFIX + "mass_decline": float(bool(reasons))}

    def _evaluate(self, state: Any, control: Any) -> None:
        import transformers

        if self.trainer is None:
            raise UsageError("PreferenceDiagnostics logs through its trainer: add it with diagnostics.attach(trainer) "
                             "instead of callbacks=[...] or trainer.add_callback")
        step = state.global_step
        metrics = self.measure(self.trainer.model)
        metrics.update(self._signals(metrics, step, warn=state.is_world_process_zero))
        self._done.add(step)
        # The base Trainer.log: subclasses such as TRL's fold their pending training metrics into whatever is
        # logged and reset them, which would steal them from the trainer's next regular log entry.
        should_log = control.should_log
        transformers.Trainer.log(self.trainer, metrics)
        control.should_log = should_log  # the callback handler's on_log clears it; the trainer's own log is due

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # On resume the restored log history holds earlier measurements: continue the running statistics.
        self._max_entropy = self._first_mass = None
        self._done = set()
        for entry in state.log_history:
            if PREFIX + "topk_entropy" in entry:
                self._signals(entry, entry.get("step", 0), warn=False)
                self._done.add(entry.get("step", 0))
        self._start_step = state.global_step

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self._start_step and state.global_step not in self._done:
            self._evaluate(state, control)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step % self.every_n_steps == 0 and state.global_step not in self._done:
            self._evaluate(state, control)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step not in self._done:
            self._evaluate(state, control)


# ---------------------------------------------------------------------------------------------------------------
# From a training config
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DiagnosticsConfig:
    """The `diagnostics` keys of a preference-training config."""

    enabled: bool = param(True, help="measure and log the over-optimisation diagnostics")
    every_n_steps: int = param(50, help="measure every this many optimizer steps (50 in Shi et al. 2024), "
                                        "plus before the first step and at the end")
    top_k: int = param(10, help="k of the top-k entropy and mass (10 in Shi et al. 2024)")
    max_examples: int = param(64, help="at most this many held-out examples are measured each time")
    max_length: int | None = param(1024, help="truncate prompt + completion to this many tokens (null: never)")
    batch_size: int = param(8, help="held-out sequences per forward pass")
    entropy_drop: float = param(0.05, help="warn when top-k entropy falls this many bits below its running maximum")
    min_mass: float | None = param(None, help="warn when top-k mass falls below this (null: no floor)")
    mass_drop: float | None = param(0.05, help="warn when top-k mass falls this much below its first value "
                                               "(null: never)")
    holdout: int | float = param(64, help="held-out rows drawn from the dataset: a count, or a fraction in (0, 1]; "
                                          "whole prompts are held out")
    seed: int = param(0, help="seed of the held-out draw")

    def __post_init__(self) -> None:
        for name in ("every_n_steps", "top_k", "max_examples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 tokens, got {self.max_length}")
        for name in ("entropy_drop", "min_mass", "mass_drop"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        if isinstance(self.holdout, float) and not 0 < self.holdout <= 1:
            raise ValueError(f"holdout as a fraction must be in (0, 1], got {self.holdout}")
        if isinstance(self.holdout, int) and self.holdout < 1:
            raise ValueError(f"holdout as a count must be at least 1, got {self.holdout}")


def parse_config(config: Mapping[str, Any] | None) -> DiagnosticsConfig:
    """Check a `diagnostics` config mapping; UsageError names the key, for unknown keys too."""
    try:
        return build_params(DiagnosticsConfig, dict(config or {}))
    except ParamError as exc:
        raise UsageError(exc.message, field=f"diagnostics.{exc.key}" if exc.key else "diagnostics") from None


def holdout_indices(dataset: datasets.Dataset, holdout: int | float,  # noqa: PYI041 (an int is a count)
                    seed: int = 0) -> list[int]:
    """Row indices held out for diagnostics: whole prompts, drawn with `seed`, until `holdout` rows are reached.

    `holdout` is a row count, or a fraction of the rows (at least one row). Prompts are held out whole so that no
    held-out prompt is trained on through another of its rows; the draw is the same for the same data and seed.
    Exclude these rows from the training set to keep the measurement on unseen prompts.
    """
    import numpy as np
    import polars as pl

    n_rows = len(dataset)
    if n_rows == 0:
        raise UsageError("the dataset is empty: there is nothing to hold out for diagnostics")
    target = holdout if isinstance(holdout, int) else max(1, round(holdout * n_rows))
    prompts = dataset.select_columns(["prompt"]).to_polars()
    group = prompts.select(pl.col("prompt").hash(seed=0).rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    order = np.random.default_rng(seed).permutation(int(group.max()) + 1)
    sizes = np.bincount(group)[order]
    taken = order[: int(np.searchsorted(np.cumsum(sizes), min(target, n_rows))) + 1]
    return np.flatnonzero(np.isin(group, taken)).tolist()


def _held_out_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as {prompt, chosen, rejected?, tools?}: unpaired rows give their desirable completions as chosen, paired
    with an undesirable completion of the same prompt where there is one."""
    if "chosen" in rows[0]:
        return rows
    undesirable: dict[str, list[Any]] = {}
    for row in rows:
        if not row["label"]:
            undesirable.setdefault(json.dumps(row["prompt"], sort_keys=True), []).append(row["completion"])
    pairs = []
    for row in rows:
        if row["label"]:
            left = undesirable.get(json.dumps(row["prompt"], sort_keys=True))
            pairs.append({"prompt": row["prompt"], "chosen": row["completion"],
                          "rejected": left.pop() if left else None, "tools": row.get("tools")})
    return pairs


def diagnostics_callback(config: Mapping[str, Any] | None, dataset: datasets.Dataset, tokenizer: Any
                         ) -> PreferenceDiagnostics | None:
    """Build the diagnostics callback from a `diagnostics` config mapping, or None when `enabled` is false.

    `dataset` holds `preference` rows (prompt/chosen/rejected) or `unpaired_preference` rows
    (prompt/completion/label); conversational or plain text. Config keys (see `DiagnosticsConfig`): `enabled`
    (true), `every_n_steps` (50), `top_k` (10), `max_examples` (64), `max_length` (1024), `batch_size` (8),
    `entropy_drop` (0.05 bits), `min_mass` (none), `mass_drop` (0.05), `holdout` (64 rows, or a fraction) and
    `seed` (0). For unpaired rows the label-true completions are the "chosen" ones for entropy and mass, and margins
    use the prompts that also have a label-false completion. The held-out row indices are in the callback's
    `holdout_indices`: drop them from the training set. Add the callback with `callback.attach(trainer)`.
    """
    settings = parse_config(config)
    if not settings.enabled:
        return None
    columns = set(dataset.column_names)
    needed = next((need for need in ({"prompt", "chosen", "rejected"}, {"prompt", "completion", "label"})
                   if need <= columns), None)
    if needed is None:
        raise UsageError(f"diagnostics need preference rows (prompt, chosen, rejected) or unpaired preference rows "
                         f"(prompt, completion, label); the dataset has columns {sorted(columns)}")
    indices = holdout_indices(dataset, settings.holdout, settings.seed)
    keep = sorted(needed | ({"tools"} & columns))
    rows = dataset.select_columns(keep).select(indices).to_list()
    pairs = _held_out_pairs(rows)
    if not pairs:
        raise UsageError(f"none of the {len(rows)} held-out rows has a desirable completion (label true): raise "
                         "holdout or change the seed")
    callback = PreferenceDiagnostics(
        pairs, tokenizer, every_n_steps=settings.every_n_steps, top_k=settings.top_k,
        max_examples=settings.max_examples, max_length=settings.max_length, batch_size=settings.batch_size,
        entropy_drop=settings.entropy_drop, min_mass=settings.min_mass, mass_drop=settings.mass_drop)
    callback.holdout_indices = indices
    return callback
