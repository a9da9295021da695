"""Generation through any OpenAI-compatible server (vLLM's, hosted APIs), with retries and bounded concurrency."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from datakit.engines.base import (
    Completion,
    Engine,
    Generation,
    Prompt,
    SamplingParams,
    per_prompt,
    prompt_kind,
)
from datakit.engines.spec import ModelSpec
from datakit.errors import EngineError
from datakit.pipeline.step import TransientError

T = TypeVar("T")

# 408 (request timeout) and 409 (conflict) are the 4xx answers that mean "try again", as in OpenAI's own client.
_RETRY_STATUSES = frozenset({408, 409, 429})
# A server asking for a longer pause than this gets this: a shard waiting an hour helps nobody.
_MAX_DELAY = 60.0
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


@dataclass
class _UsageCountedGeneration(Generation):
    """A Generation whose token ids the server did not return: its completion count comes from `usage`."""

    usage_completion_tokens: int = 0

    @property
    def completion_tokens(self) -> int:
        return self.usage_completion_tokens


class OpenAIEngine(Engine):
    """Sends each prompt as one request to an OpenAI-compatible server at `spec.base_url`.

    Chat prompts go to `/chat/completions`; text and token-id prompts go to `/completions` (vLLM takes a
    list of token ids as `prompt`). vLLM extensions (structured outputs, stop token ids, repetition penalty,
    returned token ids) are sent only when used, or when the server says it is vLLM, so hosted APIs that
    reject unknown fields still work for plain sampling.

    Requests run on a private event loop in a background thread, so `generate` is an ordinary blocking call
    from any thread, including one whose own event loop is running; all callers share one connection pool
    and the `spec.concurrency` bound.
    """

    name = "openai"

    def __init__(self, spec: ModelSpec, *, backoff: float = 0.5) -> None:
        """`backoff` is the first retry's base delay in seconds; it doubles per attempt, with jitter."""
        if not spec.base_url or not spec.base_url.startswith(("http://", "https://")):
            raise EngineError(f"engine 'openai' needs an http(s) base_url, e.g. http://127.0.0.1:8000/v1, "
                              f"got {spec.base_url!r}")
        self.spec = spec
        self.base_url = spec.base_url.rstrip("/")
        self.backoff = backoff
        self._lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._is_vllm: bool | None = None
        self._tokenizer: Any = None
        self._tokenizer_errors: dict[bool, EngineError] = {}
        self._random = random.Random()

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[Generation]:
        """Generate for every prompt, `spec.concurrency` requests at a time; results in prompt order."""
        prompts = list(prompts)
        all_params = per_prompt(params, len(prompts))
        kinds = [prompt_kind(p) for p in prompts]
        if not prompts:
            return []
        responses = self._run(self._generate_all(prompts, kinds, all_params))
        # Parsing runs here, not on the event loop: the token-id fallback may load a tokenizer.
        return [self._parse(r, kind, i) for i, (r, kind) in enumerate(zip(responses, kinds))]

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer named by `spec.tokenizer` (or `spec.path`), loaded on first use."""
        return self._load_tokenizer(local_files_only=False)

    def _load_tokenizer(self, *, local_files_only: bool) -> Any:
        """Load the tokenizer once; a failure is remembered so that it costs one attempt, not one per batch."""
        with self._tokenizer_lock:
            if self._tokenizer is not None:
                return self._tokenizer
            if local_files_only in self._tokenizer_errors:
                raise self._tokenizer_errors[local_files_only]
            name = self.spec.tokenizer or self.spec.path
            try:
                from transformers import AutoTokenizer

                # The revision pins the model's files; a separate tokenizer id is taken as given.
                revision = self.spec.revision if self.spec.tokenizer is None else None
                self._tokenizer = AutoTokenizer.from_pretrained(
                    name, revision=revision, local_files_only=local_files_only
                )
            except Exception as exc:
                error = EngineError(
                    f"cannot load a tokenizer for model {self.spec.path!r} from {name!r} ({exc}); the openai "
                    "engine needs one for chat templates (Magpie) and token counts: set `tokenizer:` in the "
                    "model spec to a local folder or Hub id of the served model's tokenizer"
                )
                self._tokenizer_errors[local_files_only] = error
                raise error from exc
            return self._tokenizer

    def close(self) -> None:
        """Close the connection pool and stop the background event loop."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result()
            self._client = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the engine's loop thread and wait for it; Ctrl-C cancels the in-flight requests."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                # A daemon thread: a caller that forgets close() must not hang interpreter exit.
                thread = threading.Thread(target=loop.run_forever, name="datakit-openai", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _ensure_client(self) -> httpx.AsyncClient:
        """The shared client, made on the loop thread (httpx clients belong to the loop that made them)."""
        if self._client is None:
            headers = {}
            api_key = os.environ.get(self.spec.api_key_env)
            if api_key:
                headers["Authorization"] = f"Bearer {api_key}"
            limits = httpx.Limits(
                max_connections=self.spec.concurrency, max_keepalive_connections=self.spec.concurrency
            )
            self._client = httpx.AsyncClient(headers=headers, limits=limits, timeout=self.spec.timeout)
            self._semaphore = asyncio.Semaphore(self.spec.concurrency)
        return self._client

    async def _generate_all(
        self, prompts: list[Prompt], kinds: list[str], params: list[SamplingParams]
    ) -> list[dict[str, Any]]:
        """Send every request concurrently; the first request that fails for good cancels the rest."""
        self._ensure_client()
        if self._is_vllm is None:
            self._is_vllm = await self._probe_vllm()
        tasks = [
            asyncio.ensure_future(self._request(i, *self._endpoint_and_body(prompt, kind, p)))
            for i, (prompt, kind, p) in enumerate(zip(prompts, kinds, params))
        ]
        try:
            return await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _probe_vllm(self) -> bool:
        """Whether the server is vLLM (its model cards say `owned_by: vllm`), to ask for token ids."""
        try:
            listing = await self._send(-1, "GET", "/models", None)
        except EngineError:
            # Servers without /models are simply not vLLM; a missing key or model shows up on the real requests.
            return False
        cards = listing.get("data") if isinstance(listing, dict) else None
        return any(isinstance(card, dict) and card.get("owned_by") == "vllm" for card in cards or [])

    def _endpoint_and_body(self, prompt: Prompt, kind: str, p: SamplingParams) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body for one prompt."""
        body: dict[str, Any] = {
            "model": self.spec.path,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
            "n": p.n,
        }
        if p.seed is not None:
            body["seed"] = p.seed
        if p.stop:
            body["stop"] = list(p.stop)
        if p.stop_token_ids:
            body["stop_token_ids"] = list(p.stop_token_ids)
        if p.repetition_penalty != 1.0:
            body["repetition_penalty"] = p.repetition_penalty
        if not p.skip_special_tokens:
            body["skip_special_tokens"] = False
        if self._is_vllm:
            body["return_token_ids"] = True
        chat = kind == "messages"
        if p.logprobs is not None:
            # Only the sampled token's logprob is kept, so no alternatives are asked for.
            body.update({"logprobs": True, "top_logprobs": 0} if chat else {"logprobs": 0})
        if chat and p.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": _schema_name(p.json_schema), "schema": dict(p.json_schema)},
            }
        elif p.json_schema is not None:
            body["structured_outputs"] = {"json": dict(p.json_schema)}
        elif p.choice is not None:
            body["structured_outputs"] = {"choice": list(p.choice)}
        elif p.regex is not None:
            body["structured_outputs"] = {"regex": p.regex}
        if chat:
            body["messages"] = [dict(m) for m in prompt]  # type: ignore[union-attr]
            return "/chat/completions", body
        body["prompt"] = prompt if kind == "text" else [int(t) for t in prompt]  # type: ignore[union-attr]
        return "/completions", body

    async def _request(self, index: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._semaphore is not None
        async with self._semaphore:
            return await self._send(index, "POST", path, body)

    async def _send(self, index: int, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """One request with retries: connection errors, timeouts, 408/409/429 and 5xx are retried with backoff.

        Raises EngineError for other error answers (a bad request will not get better) and TransientError
        once `spec.max_retries` retries are spent.
        """
        assert self._client is not None
        url = self.base_url + path
        what = f"request {index} ({method} {url})" if index >= 0 else f"{method} {url}"
        attempts = self.spec.max_retries + 1
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                async with asyncio.timeout(self.spec.timeout):
                    response = await self._client.request(method, url, json=body)
            except (httpx.TransportError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise EngineError(f"{what}: the server's answer is not JSON: {response.text[:200]!r}") from exc
                problem = f"HTTP {response.status_code}: {_error_message(response)}"
                if response.status_code < 500 and response.status_code not in _RETRY_STATUSES:
                    hint = ""
                    if response.status_code in (401, 403):
                        hint = f" (is the API key in ${self.spec.api_key_env}?)"
                    raise EngineError(f"{what} was refused with {problem}{hint}")
                retry_after = _retry_after(response)
            if attempt + 1 < attempts:
                await asyncio.sleep(self._delay(attempt, retry_after))
        raise TransientError(f"{what} failed after {attempts} attempts; last error: {problem}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before the next attempt: the server's Retry-After, else exponential backoff with jitter."""
        if retry_after is not None:
            return min(retry_after, _MAX_DELAY)
        # Jitter spreads the retries of many concurrent requests so they do not hit a busy server together.
        return min(self.backoff * 2**attempt, _MAX_DELAY) * self._random.uniform(0.5, 1.0)

    def _parse(self, response: Mapping[str, Any], kind: str, index: int) -> Generation:
        """Turn one response body into a Generation, completions in choice order."""
        try:
            choices = sorted(response["choices"], key=lambda c: c.get("index", 0))
            usage = response.get("usage") or {}
            completions = [self._completion(c, chat=kind == "messages") for c in choices]
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise EngineError(f"request {index}: unexpected answer from the server ({exc!r}): "
                              f"{json.dumps(response)[:300]}") from exc
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        if any(not c.token_ids and c.text for c in completions):
            ids = self._tokenize([c.text for c in completions])
            if ids is None:
                return _UsageCountedGeneration(prompt_tokens, completions,
                                               int(usage.get("completion_tokens") or 0))
            for completion, token_ids in zip(completions, ids):
                completion.token_ids = completion.token_ids or token_ids
        return Generation(prompt_tokens, completions)

    @staticmethod
    def _completion(choice: Mapping[str, Any], *, chat: bool) -> Completion:
        text = (choice["message"].get("content") if chat else choice.get("text")) or ""
        logprobs = None
        if choice.get("logprobs"):
            if chat:
                logprobs = [float(t["logprob"]) for t in choice["logprobs"].get("content") or []]
            else:
                logprobs = [float(lp) for lp in choice["logprobs"].get("token_logprobs") or [] if lp is not None]
        return Completion(
            text=text,
            token_ids=[int(t) for t in choice.get("token_ids") or []],
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            stop_reason=choice.get("stop_reason"),
            logprobs=logprobs,
        )

    def _tokenize(self, texts: list[str]) -> list[list[int]] | None:
        """Token ids of completion texts for servers that do not return them; None without a tokenizer."""
        try:
            # A served model name is often no Hub id at all ("gpt-4o"): counting tokens is not worth a
            # download attempt for it, only a tokenizer the spec names or one already on disk.
            tokenizer = self._load_tokenizer(local_files_only=self.spec.tokenizer is None)
        except EngineError:
            return None
        return [tokenizer.encode(text, add_special_tokens=False) for text in texts]


def _schema_name(schema: Mapping[str, Any]) -> str:
    """A `json_schema.name` OpenAI accepts (letters, digits, _ and -, at most 64): the schema's title or 'output'."""
    name = _NAME_CHARS.sub("_", str(schema.get("title") or ""))[:64]
    return name or "output"


def _error_message(response: httpx.Response) -> str:
    """The server's own error text: OpenAI's `{"error": {"message": ...}}`, else the start of the body."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if isinstance(payload, dict) and payload.get("detail"):
        return str(payload["detail"])
    return json.dumps(payload)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (it may be a number or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
