"""OpenAIEngine: generation against a real vLLM server, transport (retries, concurrency, mapping) against a fake one."""

from __future__ import annotations

import asyncio
import http.server
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from datakit.engines.base import SamplingParams
from datakit.engines.openai_engine import OpenAIEngine
from datakit.engines.spec import ModelSpec
from datakit.errors import EngineError
from datakit.pipeline.step import TransientError
from datakit.testing import build_chat_model

CHAT = [{"role": "user", "content": "Say something."}]
SERVED_NAME = "tiny-chat"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("openai") / "llama3")


# --- fake server: transport behaviour only (retries, status codes, concurrency, request bodies) -----------


@dataclass
class Reply:
    status: int = 200
    payload: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def canned_completion(body: dict[str, Any], token_ids: list[int] | None = None) -> dict[str, Any]:
    """An OpenAI-shaped answer echoing the prompt, so tests can check result order; token ids only if given."""
    echo = json.dumps(body.get("prompt", body.get("messages")))
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
    if token_ids is not None:
        choice["token_ids"] = token_ids
    if "messages" in body:
        choice["message"] = {"role": "assistant", "content": echo}
    else:
        choice["text"] = echo
    return {"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}


class FakeServer:
    """A threaded HTTP server answering POSTs with `script(call_number, body)`; counts calls and peak concurrency.

    GET /models answers with model cards owned by `owner` (or 404 when None), as a vLLM server would.
    """

    def __init__(self, script: Callable[[int, dict[str, Any]], Reply], owner: str | None = None) -> None:
        self.script, self.owner = script, owner
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if server.owner is None:
                    self._reply(Reply(404, {"error": {"message": "no such route"}}))
                else:
                    self._reply(Reply(200, {"object": "list", "data": [{"id": "m", "owned_by": server.owner}]}))

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    call = len(server.bodies)
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                try:
                    reply = server.script(call, body)
                    time.sleep(reply.delay)
                    self._reply(reply)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _reply(self, reply: Reply) -> None:
                data = json.dumps(reply.payload).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on this request (the timeout test)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def calls(self) -> int:
        return len(self.bodies)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def start(script: Callable[[int, dict[str, Any]], Reply], owner: str | None = None) -> FakeServer:
        servers.append(FakeServer(script, owner))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def fake_engine(url: str, **spec: Any) -> OpenAIEngine:
    # A tiny backoff keeps retry tests fast; the delays' shape is tested on its own.
    return OpenAIEngine(ModelSpec(path="m", engine="openai", base_url=url, **spec), backoff=0.01)


def ok(call: int, body: dict[str, Any]) -> Reply:
    return Reply(200, canned_completion(body, token_ids=[7, 8, 9, 10, 11]))


def ok_without_token_ids(call: int, body: dict[str, Any]) -> Reply:
    return Reply(200, canned_completion(body))


def test_fake_concurrency_bound_and_order(fake):
    # Each answer takes long enough that a busy machine still gets all permitted requests in flight together.
    server = fake(lambda call, body: Reply(200, canned_completion(body, [1]), delay=0.5))
    engine = fake_engine(server.url, concurrency=3)
    prompts = [f"prompt {i}" for i in range(7)]
    out = engine.generate(prompts, SamplingParams(max_tokens=4))
    engine.close()
    assert server.calls == 7
    assert server.peak == 3
    assert [json.loads(g.completions[0].text) for g in out] == prompts


def test_fake_retries_5xx_then_succeeds(fake):
    server = fake(lambda call, body: Reply(503, {"error": {"message": "busy"}}) if call <= 2 else ok(call, body))
    engine = fake_engine(server.url, max_retries=3)
    out = engine.generate(["hi"], SamplingParams())
    engine.close()
    assert server.calls == 3
    assert out[0].completions[0].text == '"hi"'


def test_fake_honours_retry_after(fake):
    server = fake(lambda call, body: Reply(429, {}, {"Retry-After": "0.3"}) if call == 1 else ok(call, body))
    # With a 60 s backoff, finishing in well under that shows the server's 0.3 s was used instead
    # (the bound leaves room for a busy machine).
    engine = OpenAIEngine(ModelSpec(path="m", engine="openai", base_url=server.url), backoff=60.0)
    start = time.monotonic()
    engine.generate(["hi"], SamplingParams())
    elapsed = time.monotonic() - start
    engine.close()
    assert server.calls == 2
    assert 0.3 <= elapsed < 20


def test_fake_4xx_raises_engine_error_without_retry(fake):
    def script(call: int, body: dict[str, Any]) -> Reply:
        if body["prompt"] == "bad":
            return Reply(400, {"error": {"message": "prompt is too long: 9999 tokens"}})
        return ok(call, body)

    server = fake(script)
    engine = fake_engine(server.url, max_retries=5)
    with pytest.raises(EngineError) as info:
        engine.generate(["fine", "bad"], SamplingParams())
    engine.close()
    assert "prompt is too long: 9999 tokens" in str(info.value)
    assert "request 1" in str(info.value)
    assert [b["prompt"] for b in server.bodies].count("bad") == 1


def test_fake_always_503_raises_transient_after_max_retries(fake):
    server = fake(lambda call, body: Reply(503, {"error": {"message": "overloaded"}}))
    engine = fake_engine(server.url, max_retries=2)
    with pytest.raises(TransientError) as info:
        engine.generate(["hi"], SamplingParams())
    engine.close()
    assert server.calls == 3
    assert "overloaded" in str(info.value)


def test_fake_timeout_is_retried_then_transient(fake):
    server = fake(lambda call, body: Reply(200, canned_completion(body), delay=1.0))
    engine = fake_engine(server.url, timeout=0.2, max_retries=1)
    with pytest.raises(TransientError):
        engine.generate(["hi"], SamplingParams())
    engine.close()
    assert server.calls == 2


def test_fake_connection_refused_is_transient():
    engine = fake_engine(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    with pytest.raises(TransientError):
        engine.generate(["hi"], SamplingParams())
    engine.close()


def test_fake_request_bodies(fake):
    """Sampling parameters map to the OpenAI fields and vLLM's extensions (structured_outputs, stop_token_ids, ...)."""
    server = fake(ok, owner="vllm")
    engine = fake_engine(server.url)
    schema = {"title": "My answer!", "type": "object", "properties": {"a": {"type": "integer"}}}
    full = SamplingParams(temperature=0.5, top_p=0.9, max_tokens=7, n=2, seed=3, stop=("x",), stop_token_ids=(5,),
                          repetition_penalty=1.1, logprobs=2, skip_special_tokens=False, json_schema=schema)
    engine.generate([CHAT, "text", [1, 2, 3]], full)
    engine.generate(["a", [{"role": "user", "content": "b"}]],
                    [SamplingParams(choice=("yes", "no")), SamplingParams(regex="[0-9]+")])
    engine.close()
    # Requests run concurrently, so they arrive in any order: find each by its prompt.
    by_prompt = {json.dumps(body.get("prompt", body.get("messages"))): body for body in server.bodies}
    chat, text, tokens, choice, regex = (by_prompt[json.dumps(p)] for p in (CHAT, "text", [1, 2, 3], "a",
                                                                          [{"role": "user", "content": "b"}]))
    for body in (chat, text, tokens):
        assert {k: body[k] for k in ("model", "temperature", "top_p", "max_tokens", "n", "seed", "stop",
                                     "stop_token_ids", "repetition_penalty", "skip_special_tokens",
                                     "return_token_ids")} == {
            "model": "m", "temperature": 0.5, "top_p": 0.9, "max_tokens": 7, "n": 2, "seed": 3, "stop": ["x"],
            "stop_token_ids": [5], "repetition_penalty": 1.1, "skip_special_tokens": False, "return_token_ids": True}
    assert chat["messages"] == CHAT and "prompt" not in chat
    assert (chat["logprobs"], chat["top_logprobs"]) == (True, 0)
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {"name": "My_answer_", "schema": schema}}
    assert text["prompt"] == "text" and tokens["prompt"] == [1, 2, 3]
    assert text["logprobs"] == 0 and "top_logprobs" not in text
    assert text["structured_outputs"] == {"json": schema} and "response_format" not in text
    assert choice["structured_outputs"] == {"choice": ["yes", "no"]}
    assert regex["structured_outputs"] == {"regex": "[0-9]+"}
    # Plain requests carry no extension a strict server (api.openai.com) would refuse.
    assert not {"stop_token_ids", "repetition_penalty", "skip_special_tokens", "seed", "logprobs"} & choice.keys()


def test_fake_non_vllm_server_gets_no_extensions_and_token_counts_from_usage(fake, tmp_path):
    server = fake(ok_without_token_ids)
    # An empty folder: no tokenizer can be loaded, so token ids stay empty and counts come from usage.
    engine = fake_engine(server.url, tokenizer=str(tmp_path))
    out = engine.generate(["hi"], SamplingParams())
    engine.close()
    assert "return_token_ids" not in server.bodies[0]
    assert out[0].prompt_tokens == 3
    assert out[0].completions[0].token_ids == []
    assert out[0].completion_tokens == 5
    with pytest.raises(EngineError, match="tokenizer"):
        _ = engine.tokenizer


def test_fake_token_ids_from_local_tokenizer(fake, model_dir):
    server = fake(ok_without_token_ids)
    engine = fake_engine(server.url, tokenizer=str(model_dir))
    out = engine.generate(["hello"], SamplingParams())
    engine.close()
    completion = out[0].completions[0]
    assert completion.token_ids == engine.tokenizer.encode(completion.text, add_special_tokens=False)
    assert out[0].completion_tokens == len(completion.token_ids) > 0


def test_fake_callable_from_threads_and_running_event_loop(fake):
    server = fake(ok)
    engine = fake_engine(server.url, concurrency=2)

    async def inside_a_loop() -> str:
        return engine.generate(["loop"], SamplingParams())[0].completions[0].text

    assert asyncio.run(inside_a_loop()) == '"loop"'
    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda i: engine.generate([f"t{i}"], SamplingParams())[0].completions[0].text,
                              range(8)))
    engine.close()
    assert texts == [f'"t{i}"' for i in range(8)]
    assert server.peak <= 2


def test_backoff_grows_with_jitter_and_caps():
    engine = OpenAIEngine(ModelSpec(path="m", engine="openai", base_url="http://127.0.0.1:1/v1"), backoff=1.0)
    for attempt in range(4):
        delays = {engine._delay(attempt, None) for _ in range(20)}
        assert all(2**attempt / 2 <= d <= 2**attempt for d in delays) and len(delays) > 1
    assert engine._delay(20, None) <= 60
    assert engine._delay(0, 7.0) == 7.0


# --- real vLLM server: generation --------------------------------------------------------------------------


@dataclass
class VllmServer:
    process: subprocess.Popen
    base_url: str
    log_path: Path
    model_dir: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module", autouse=True)
def vllm_server(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer | None]:
    """Start the real vLLM server when the module begins, so its ~30 s start overlaps the fake-server tests.

    Nothing starts when no selected test needs it (e.g. `-k fake`) or when vLLM is not installed.
    """
    wanted = any("vllm_engine" in item.fixturenames for item in request.session.items if item.module is request.module)
    if not wanted or importlib.util.find_spec("vllm") is None:
        yield None
        return
    model_dir = request.getfixturevalue("model_dir")
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1")
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
               "--max-model-len", "512", "--disable-log-stats", "--uvicorn-log-level", "warning",
               # vLLM's bfloat16 CPU path dies with SIGILL on this machine for the tiny test models.
               "--dtype", "float32"]
    with open(log_path, "wb") as log:
        # A new session, so teardown can end the server and anything it started as one process group.
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield VllmServer(process, f"http://127.0.0.1:{port}/v1", log_path, model_dir)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def vllm_engine(vllm_server: VllmServer | None) -> Iterator[OpenAIEngine]:
    """An engine on the real server, once `/v1/models` answers."""
    if vllm_server is None:
        pytest.skip("vllm is not installed")
    deadline = time.monotonic() + 180
    while True:
        if vllm_server.process.poll() is not None:
            pytest.fail(f"the vLLM server exited with {vllm_server.process.returncode}:\n{vllm_server.log_tail()}")
        try:
            if httpx.get(vllm_server.base_url + "/models", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the vLLM server did not start:\n{vllm_server.log_tail()}")
        time.sleep(0.5)
    engine = OpenAIEngine(ModelSpec(path=SERVED_NAME, engine="openai", base_url=vllm_server.base_url,
                                    tokenizer=str(vllm_server.model_dir), concurrency=4, timeout=60, max_retries=1))
    yield engine
    engine.close()


@pytest.mark.slow
def test_vllm_chat_text_and_token_prompts_in_one_call(vllm_engine):
    tokenizer = vllm_engine.tokenizer
    token_prompt = tokenizer.encode("Hello there")
    out = vllm_engine.generate([CHAT, "Hello there", token_prompt], SamplingParams(max_tokens=8, seed=1, logprobs=0))
    assert len(out) == 3
    chat_ids = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert out[0].prompt_tokens == len(chat_ids["input_ids"])
    # A text prompt is tokenized as given, BOS included, so it matches the explicit token ids.
    assert out[1].prompt_tokens == out[2].prompt_tokens == len(token_prompt)
    assert out[1].completions[0].token_ids == out[2].completions[0].token_ids
    for generation in out:
        (completion,) = generation.completions
        assert 1 <= len(completion.token_ids) <= 8
        assert completion.finish_reason in ("stop", "length")
        assert len(completion.logprobs) == len(completion.token_ids)
        assert all(lp <= 0 for lp in completion.logprobs)
        assert generation.completion_tokens == len(completion.token_ids)


@pytest.mark.slow
def test_vllm_n_completions_and_seed_determinism(vllm_engine):
    prompts = [CHAT, "Once upon"]
    first = vllm_engine.generate(prompts, SamplingParams(n=3, seed=7, max_tokens=12))
    again = vllm_engine.generate(prompts, SamplingParams(n=3, seed=7, max_tokens=12))
    other = vllm_engine.generate(prompts, SamplingParams(n=3, seed=8, max_tokens=12))
    assert [len(g.completions) for g in first] == [3, 3]
    ids = [[c.token_ids for c in g.completions] for g in first]
    assert ids == [[c.token_ids for c in g.completions] for g in again]
    assert ids != [[c.token_ids for c in g.completions] for g in other]
    assert all(len({tuple(t) for t in per_prompt}) > 1 for per_prompt in ids)


@pytest.mark.slow
def test_vllm_max_tokens_gives_length(vllm_engine):
    # Random weights seldom sample a stop token in 5 steps, and the fixed seed makes this run exact.
    (generation,) = vllm_engine.generate(["Count:"], SamplingParams(max_tokens=5, seed=2))
    (completion,) = generation.completions
    assert completion.finish_reason == "length"
    assert completion.stop_reason is None
    assert len(completion.token_ids) == 5


@pytest.mark.slow
def test_vllm_stop_string_and_stop_token(vllm_engine):
    params = SamplingParams(max_tokens=24, seed=11)
    full = vllm_engine.generate(["Once upon"], params)[0].completions[0]
    match = re.search(r"[A-Za-z]{2,}", full.text[1:])
    assert match, full.text
    stop = match.group()
    cut = vllm_engine.generate(["Once upon"], SamplingParams(max_tokens=24, seed=11, stop=(stop,)))[0].completions[0]
    assert cut.finish_reason == "stop" and cut.stop_reason == stop
    assert cut.text == full.text[: full.text.index(stop)]

    position = len(full.token_ids) // 2
    stop_id = full.token_ids[position]
    by_id = vllm_engine.generate(["Once upon"], SamplingParams(max_tokens=24, seed=11, stop_token_ids=(stop_id,)))
    completion = by_id[0].completions[0]
    assert completion.finish_reason == "stop" and completion.stop_reason == stop_id
    assert completion.token_ids == full.token_ids[: full.token_ids.index(stop_id) + 1]


@pytest.mark.slow
def test_vllm_structured_outputs(vllm_engine):
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}, "n": {"type": "integer"}},
              "required": ["answer", "n"], "additionalProperties": False}
    params = [SamplingParams(choice=("alpha", "beta"), seed=1), SamplingParams(regex=r"[0-9]{3}-[a-z]{2}", seed=1),
              SamplingParams(json_schema=schema, max_tokens=120, seed=1)]
    for prompt in ("Pick:", CHAT):
        choice, regex, as_json = vllm_engine.generate([prompt] * 3, params)
        assert choice.completions[0].text in ("alpha", "beta")
        assert re.fullmatch(r"[0-9]{3}-[a-z]{2}", regex.completions[0].text)
        assert as_json.completions[0].finish_reason == "stop"
        value = json.loads(as_json.completions[0].text)
        assert set(value) == {"answer", "n"} and value["answer"] in ("yes", "no") and isinstance(value["n"], int)


@pytest.mark.slow
def test_vllm_unknown_model_is_engine_error(vllm_engine):
    engine = OpenAIEngine(ModelSpec(path="no-such-model", engine="openai", base_url=vllm_engine.base_url))
    with pytest.raises(EngineError, match="request 0"):
        engine.generate(["hi"], SamplingParams(max_tokens=2))
    engine.close()
