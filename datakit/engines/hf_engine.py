"""The transformers engine: batched, left-padded `generate`, for small models and machines without vLLM."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
import transformers
from transformers import LogitsProcessorList
from transformers.generation.logits_process import TopPLogitsWarper

from datakit.engines.base import (
    Completion,
    Engine,
    Generation,
    Prompt,
    SamplingParams,
    encode_prompts,
    per_prompt,
)
from datakit.engines.loading import require, torch_device, torch_dtype
from datakit.engines.spec import ModelSpec
from datakit.errors import EngineError

XGRAMMAR_INSTALL = (
    "pip install xgrammar (it comes with vLLM), or use the vllm or openai engine for JSON-schema and regex outputs"
)


class HFEngine(Engine):
    """`AutoModelForCausalLM.generate` over left-padded batches of `spec.batch_size` prompts.

    Requests with equal sampling parameters share batches. Sampling is done by a logits processor that
    adds Gumbel noise from one `torch.Generator` per row, after which `generate` decodes greedily: the
    argmax of noisy logits is an exact draw from the softmax, and a row's draw depends only on its own
    seed, so seeded requests are reproducible whatever batch they land in, and different seeds still
    share a batch. Token ids and logprobs follow vLLM: the EOS or stop token that ended a completion is
    in `token_ids`; logprobs are taken after any grammar mask and before penalties and temperature.

    Structured output: `choice` scores every option's likelihood (its own tokenization plus EOS) in one
    forward pass and picks the best (temperature 0) or samples among them; its logprobs are the model's
    unconstrained ones for those tokens. `json_schema` and `regex` mask the logits with xgrammar when
    it is installed.
    """

    name = "transformers"

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.device = torch_device(spec.device)
        try:
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(
                spec.tokenizer or spec.path, revision=None if spec.tokenizer else spec.revision
            )
            model = transformers.AutoModelForCausalLM.from_pretrained(
                spec.path, revision=spec.revision, dtype=torch_dtype(spec.dtype), **spec.options
            )
        except Exception as exc:  # missing files, bad config, size mismatch...: cannot load
            raise EngineError(f"transformers cannot load {spec.path!r}: {exc}") from exc
        defaults = model.generation_config
        # vLLM stops at the tokenizer's EOS and at every EOS id of the model's generation config.
        eos = defaults.eos_token_id
        eos_ids = set(eos) if isinstance(eos, list) else {eos} - {None}
        tokenizer_eos = self._tokenizer.eos_token_id
        if tokenizer_eos is not None:
            eos_ids.add(tokenizer_eos)
        self._eos_ids = frozenset(eos_ids)
        # what a finished answer ends with when scoring choices, e.g. <|eot_id|> for Llama 3 chat models
        self._eos_id = tokenizer_eos if tokenizer_eos is not None else min(eos_ids, default=None)
        pad = self._tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else min(eos_ids, default=0)
        # Keep only the model's stop tokens from its generation defaults, as vLLM does: a checkpoint's
        # sampling defaults (temperature, repetition penalty, ...) must not leak into our requests.
        model.generation_config = transformers.GenerationConfig(
            eos_token_id=sorted(eos_ids) or None, pad_token_id=self._pad_id, bos_token_id=defaults.bos_token_id
        )
        self._model = model.to(self.device).eval()
        self._rng = random.Random(spec.seed)
        self._grammar_compiler: Any = None
        self._lock = threading.Lock()

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[Generation]:
        """Generate for every prompt, batching requests that differ at most in their seed."""
        # One caller at a time: steps sharing this engine may run in different threads, and the model,
        # the engine's random state and the grammar compiler are shared.
        with self._lock:
            return self._generate(prompts, per_prompt(params, len(prompts)))

    def _generate(self, prompts: Sequence[Prompt], params: list[SamplingParams]) -> list[Generation]:
        ids = encode_prompts(self._tokenizer, prompts)
        limit = self.spec.max_model_len
        if limit is not None and any(len(row) >= limit for row in ids):
            longest = max(len(row) for row in ids)
            raise EngineError(f"a prompt has {longest} tokens; max_model_len is {limit}")
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(params):
            groups.setdefault(repr(dataclasses.replace(p, seed=None)), []).append(i)
        results: list[Generation | None] = [None] * len(prompts)
        for members in groups.values():
            p = params[members[0]]
            run = self._choose if p.choice is not None else self._sample
            members.sort(key=lambda i: len(ids[i]))  # similar lengths share a batch: less padding
            for start in range(0, len(members), self.spec.batch_size):
                chunk = members[start : start + self.spec.batch_size]
                seeds = [seed for i in chunk for seed in self._sample_seeds(params[i].seed, p.n)]
                for i, completions in zip(chunk, run([ids[i] for i in chunk], p, seeds)):
                    results[i] = Generation(len(ids[i]), completions)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        """Drop the model and give its GPU memory back."""
        self.__dict__.pop("_model", None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _sample_seeds(self, seed: int | None, n: int) -> list[int]:
        """One generator seed per sample: derived from the request's seed, or drawn from the engine's."""
        if seed is None:
            return [self._rng.getrandbits(63) for _ in range(n)]
        return [random.Random(f"{seed}/{j}").getrandbits(63) for j in range(n)]

    def _sample(self, prompts: list[list[int]], p: SamplingParams, seeds: list[int]) -> list[list[Completion]]:
        """Free (or grammar-constrained) generation for one batch; `seeds` has one entry per row (prompt × n)."""
        copies = p.n if p.temperature > 0 else 1  # greedy: the n answers are one answer
        rows = [row for row in prompts for _ in range(copies)]
        width = max(len(row) for row in rows)
        input_ids = torch.tensor([[self._pad_id] * (width - len(r)) + r for r in rows], device=self.device)
        attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        # vLLM's order: grammar mask, logprobs, penalties, temperature and top-p, draw.
        processors = LogitsProcessorList()
        if p.json_schema is not None or p.regex is not None:
            processors.append(_GrammarMask(self._grammar(p), len(rows)))
        recorder = _LogprobRecorder() if p.logprobs is not None else None
        if recorder:
            processors.append(recorder)
        if p.repetition_penalty != 1.0:
            processors.append(
                _RepetitionPenalty(p.repetition_penalty, rows, self._model.config.vocab_size, self.device)
            )
        if p.temperature > 0:
            processors.append(_GumbelSampler(p.temperature, p.top_p, seeds, self.device))
        config = transformers.GenerationConfig(
            max_new_tokens=p.max_tokens,
            do_sample=False,
            eos_token_id=sorted(self._eos_ids | set(p.stop_token_ids)) or None,
            pad_token_id=self._pad_id,
            stop_strings=list(p.stop) or None,
        )
        with torch.inference_mode():
            output = self._model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
                logits_processor=processors,
                tokenizer=self._tokenizer if p.stop else None,
            )
        generated = output[:, width:]
        logprobs = recorder.finish(generated).tolist() if recorder else None
        tokens = generated.tolist()

        def completion(row: int) -> Completion:
            return self._completion(tokens[row], p, logprobs[row] if logprobs else None)

        return [[completion(k * copies + j % copies) for j in range(p.n)] for k in range(len(prompts))]

    def _completion(self, tokens: list[int], p: SamplingParams, logprobs: list[float] | None) -> Completion:
        """Cut one generated row where it ended (stop string, stop token, EOS or length) and say why.

        Finished rows are padded, so the end is found from the content, not the row's length.
        """
        ends = self._eos_ids | set(p.stop_token_ids)
        end = next((k for k, t in enumerate(tokens) if t in ends), None)
        body = tokens if end is None else tokens[:end]
        text = self._decode(body, p)
        hits = [(text.find(s), s) for s in p.stop if s in text]
        if hits:
            at, stop = min(hits)
            # The completion ends with the token that completed the stop string, as in vLLM.
            kept = _shortest_prefix(body, lambda k: stop in self._decode(body[:k], p))
            return Completion(text[:at], body[:kept], "stop", stop, logprobs and logprobs[:kept])
        if end is not None:
            token = tokens[end]
            reason = token if token in p.stop_token_ids and token not in self._eos_ids else None
            return Completion(text, tokens[: end + 1], "stop", reason, logprobs and logprobs[: end + 1])
        return Completion(text, tokens, "length", None, logprobs)

    def _decode(self, tokens: list[int], p: SamplingParams) -> str:
        return self._tokenizer.decode(tokens, skip_special_tokens=p.skip_special_tokens)

    def _choose(self, prompts: list[list[int]], p: SamplingParams, seeds: list[int]) -> list[list[Completion]]:
        """Answer `choice` requests by scoring each option (followed by EOS) as a continuation of the prompt."""
        assert p.choice is not None
        eos = [] if self._eos_id is None else [self._eos_id]
        options = [self._tokenizer(o, add_special_tokens=False)["input_ids"] + eos for o in p.choice]
        token_logprobs = self._score([(prompt, option) for prompt in prompts for option in options])
        totals = torch.tensor([sum(lp) for lp in token_logprobs]).view(len(prompts), len(options))
        results = []
        for k in range(len(prompts)):
            if p.temperature == 0:
                picks = [int(totals[k].argmax())] * p.n
            else:
                probs = _warp(totals[k : k + 1], p.temperature, p.top_p).softmax(-1)
                generators = [torch.Generator().manual_seed(seed) for seed in seeds[k * p.n : (k + 1) * p.n]]
                picks = [int(torch.multinomial(probs, 1, generator=g)) for g in generators]
            scored = token_logprobs[k * len(options) : (k + 1) * len(options)]
            wanted = p.logprobs is not None
            results.append(
                [Completion(p.choice[o], list(options[o]), "stop", None, scored[o] if wanted else None) for o in picks]
            )
        return results

    def _score(self, pairs: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        """Log-probability of each continuation token given the prompt, for (prompt, continuation) pairs.

        Rows are left-padded so every continuation ends at the last position, and only the last positions'
        logits are computed (a full vocabulary for every prompt position would not fit for long prompts).
        """
        scores: list[list[float]] = []
        for start in range(0, len(pairs), self.spec.batch_size):
            batch = pairs[start : start + self.spec.batch_size]
            rows = [prompt + cont for prompt, cont in batch]
            width = max(len(row) for row in rows)
            keep = max(len(cont) for _, cont in batch) + 1
            input_ids = torch.tensor([[self._pad_id] * (width - len(r)) + r for r in rows], device=self.device)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
            with torch.inference_mode():
                logits = self._model(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0),  # real tokens count from 0 despite padding
                    logits_to_keep=keep,
                ).logits
            logprobs = logits.float().log_softmax(-1)
            for b, (_, cont) in enumerate(batch):
                # logits at position i predict token i + 1: the continuation is predicted by positions -len-1 .. -2
                predicted = logprobs[b, keep - len(cont) - 1 : keep - 1]
                scores.append(predicted.gather(1, torch.tensor(cont, device=self.device)[:, None])[:, 0].tolist())
        return scores

    def _grammar(self, p: SamplingParams) -> Any:
        """The xgrammar grammar for a JSON-schema or regex request (the compiler is built on first use)."""
        xgr = require("xgrammar", XGRAMMAR_INSTALL)
        if self._grammar_compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(
                self._tokenizer, vocab_size=self._model.config.vocab_size, stop_token_ids=sorted(self._eos_ids)
            )
            self._grammar_compiler = xgr.GrammarCompiler(info)
        try:
            if p.json_schema is not None:
                # compact JSON, as the vllm engine asks for: no runaway whitespace between tokens
                return self._grammar_compiler.compile_json_schema(json.dumps(p.json_schema), any_whitespace=False)
            return self._grammar_compiler.compile_regex(p.regex)
        except RuntimeError as exc:
            raise EngineError(f"xgrammar cannot compile the requested output format: {exc}") from exc


def _shortest_prefix(tokens: list[int], contains: Callable[[int], bool]) -> int:
    """The smallest k with `contains(k)` true, by bisection (`contains(len(tokens))` is known to hold)."""
    low, high = 1, len(tokens)
    while low < high:
        middle = (low + high) // 2
        if contains(middle):
            high = middle
        else:
            low = middle + 1
    return high


def _warp(scores: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Temperature, then nucleus filtering (transformers' warper), in vLLM's order."""
    scores = scores / temperature
    if top_p < 1.0:
        scores = TopPLogitsWarper(float(top_p))(None, scores)  # type: ignore[arg-type]
    return scores


class _LogprobRecorder:
    """Keeps the log-probability of each sampled token under the distribution it sees.

    A processor sees the logits before the token is chosen and the chosen token only at the next step,
    so it holds one step of log-probabilities (not the whole vocabulary for every step).
    """

    def __init__(self) -> None:
        self._steps: list[torch.Tensor] = []
        self._last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._last is not None:
            self._steps.append(self._last.gather(1, input_ids[:, -1:]).squeeze(1))
        self._last = scores.log_softmax(-1)
        return scores

    def finish(self, generated: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (rows × generated tokens) once generation is over."""
        assert self._last is not None
        self._steps.append(self._last.gather(1, generated[:, -1:]).squeeze(1))
        return torch.stack(self._steps, dim=1).cpu()


class _RepetitionPenalty:
    """vLLM's repetition penalty over prompt and output tokens, ignoring the left padding of shorter rows."""

    def __init__(self, penalty: float, rows: list[list[int]], vocab_size: int, device: str) -> None:
        self.penalty = penalty
        self.seen = torch.zeros(len(rows), vocab_size, dtype=torch.bool, device=device)
        for r, row in enumerate(rows):
            self.seen[r, row] = True
        self.started = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.started:
            self.seen[torch.arange(len(input_ids)), input_ids[:, -1]] = True
        self.started = True
        penalized = torch.where(scores > 0, scores / self.penalty, scores * self.penalty)
        return torch.where(self.seen, penalized, scores)


class _GrammarMask:
    """Masks tokens the grammar forbids, one xgrammar matcher per row.

    A row whose matcher rejects its last token was ended by something else (a stop string) and is
    now padding: it is left unconstrained.
    """

    def __init__(self, grammar: Any, rows: int) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.matchers = [xgr.GrammarMatcher(grammar) for _ in range(rows)]
        self.live = [True] * rows
        self.bitmask = xgr.allocate_token_bitmask(rows, grammar.tokenizer_info.vocab_size)
        self.started = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        last = input_ids[:, -1].tolist()
        for r, matcher in enumerate(self.matchers):
            if self.started and self.live[r] and not matcher.is_terminated():
                self.live[r] = matcher.accept_token(last[r])
            if self.live[r] and not matcher.is_terminated():
                matcher.fill_next_token_bitmask(self.bitmask, r)
            else:
                self.bitmask[r] = -1  # all bits set: every token allowed
        self.started = True
        self.xgr.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device))
        return scores


class _GumbelSampler:
    """Turns logits into one draw per row for greedy decoding: warped logits plus Gumbel noise.

    argmax(logits/T - log E) with E ~ Exp(1) is a sample from softmax(logits/T). Each row draws its
    noise from its own generator, so its tokens depend on its seed alone.
    """

    def __init__(self, temperature: float, top_p: float, seeds: list[int], device: str) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = _warp(scores, self.temperature, self.top_p)
        noise = torch.empty_like(scores)
        for row, generator in zip(noise, self.generators):
            row.exponential_(generator=generator)
        # exponential_ can return exactly 0; log(0) would turn a forbidden (-inf) token into NaN
        return scores - noise.clamp_(min=torch.finfo(noise.dtype).tiny).log()
