"""`datakit train {sft,dpo,kto,reward}` end to end on a tiny random chat model: real TRL trainers, two steps each."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from datakit.errors import UsageError
from datakit.hub.manifest import content_fingerprint, read_rows
from tests.train.conftest import EXAMPLES, FAST, cli, losses, metrics, provenance

pytest.importorskip("trl")


def fingerprint_of(path: Path) -> str:
    return content_fingerprint(read_rows([path])[1])


def test_sft_trains_saves_a_loadable_model_and_provenance(tiny_chat, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "sft"
    data = EXAMPLES / "sft.jsonl"
    code, stdout, err = cli(capsys, "train", "sft", "--dataset", data, "--model", tiny_chat, "--output", out, *FAST)
    assert code == 0, err
    assert f"wrote the model and tokenizer to {out}" in stdout
    assert "trained sft on 4 rows from 4 sft rows (conversational)" in stdout
    assert len(losses(out)) == 3  # steps 1 and 2, and the run's mean
    assert [e["step"] for e in metrics(out) if "loss" in e] == [1, 2]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 2
    assert AutoTokenizer.from_pretrained(out).chat_template
    record = provenance(out)
    assert record["trainer"] == "sft" and record["trl_class"] == "SFTTrainer"
    assert record["dataset"] == {"ref": str(data), "source": "file", "name": "sft", "fingerprint": fingerprint_of(data),
                                 "record_kind": "sft", "style": "conversational", "rows": 4, "trained_rows": 4,
                                 "converted": None, "held_out": 0}
    assert record["model"] == {"path": str(tiny_chat), "revision": None, "commit": None}
    assert record["lora"] is None and record["diagnostics"] is None
    assert record["config"]["max_steps"] == 2 and record["config"]["learning_rate"] == 2e-5
    assert record["config"]["output_dir"] == str(out) and record["config"]["report_to"] == []
    assert record["config"]["hub_token"] is None
    assert {"trl", "transformers", "torch", "peft", "datakit"} <= set(record["packages"])
    assert record["command"][:3] == ["datakit", "train", "sft"] and "max_steps=2" in record["command"]
    assert record["metrics"]["train_loss"] == losses(out)[-1]


def test_dpo_trains_on_preference_rows(tiny_chat, tmp_path, capsys):
    out = tmp_path / "dpo"
    code, stdout, err = cli(capsys, "train", "dpo", "--dataset", EXAMPLES / "preference.jsonl", "--model", tiny_chat,
                            "-o", out, *FAST)
    assert code == 0, err
    assert losses(out)
    record = provenance(out)
    assert (record["dataset"]["record_kind"], record["dataset"]["rows"]) == ("preference", 3)
    assert record["config"]["beta"] == 0.1 and record["config"]["loss_type"] == ["sigmoid"]
    # Three rows are too few to hold prompts out for diagnostics by default: they stay off, and say so.
    assert "preference diagnostics are off" in stdout
    assert not any(k.startswith("diagnostics/") for e in metrics(out) for k in e)


def test_dpo_logs_diagnostics_on_held_out_prompts(tiny_chat, tmp_path, capsys):
    out = tmp_path / "dpo-diag"
    code, stdout, err = cli(capsys, "train", "dpo", "--dataset", EXAMPLES / "preference.jsonl", "--model", tiny_chat,
                            "-o", out, *FAST, "--set", "diagnostics.holdout=1")
    assert code == 0, err
    record = provenance(out)
    assert (record["dataset"]["held_out"], record["dataset"]["trained_rows"]) == (1, 2)
    assert record["diagnostics"] == {"holdout": 1}
    measured = [e for e in metrics(out) if "diagnostics/topk_entropy" in e]
    assert [e["step"] for e in measured] == [0, 2]  # before training and at its end


def test_kto_trains_on_unpaired_rows(tiny_chat, tmp_path, capsys):
    out = tmp_path / "kto"
    code, _, err = cli(capsys, "train", "kto", "--dataset", EXAMPLES / "unpaired_preference.jsonl",
                       "--model", tiny_chat, "-o", out, *FAST)
    assert code == 0, err
    assert losses(out)
    assert provenance(out)["dataset"]["record_kind"] == "unpaired_preference"
    assert provenance(out)["dataset"]["converted"] is None


def test_kto_unpairs_preference_rows(tiny_chat, tmp_path, capsys):
    out = tmp_path / "kto-pairs"
    code, stdout, err = cli(capsys, "train", "kto", "--dataset", EXAMPLES / "preference.jsonl", "--model", tiny_chat,
                            "-o", out, *FAST)
    assert code == 0, err
    assert "chosen reply with label true and the rejected reply with label false" in stdout
    dataset = provenance(out)["dataset"]
    assert (dataset["record_kind"], dataset["rows"], dataset["trained_rows"]) == ("preference", 3, 6)
    assert dataset["converted"] == "preference -> unpaired_preference"
    assert losses(out)


def test_unpair_labels_chosen_true_and_rejected_false():
    from datakit.train.data import unpair

    table = pa.table({"prompt": ["p1", "p2"], "chosen": ["c1", "c2"], "rejected": ["r1", "r2"], "id": ["a", "b"]})
    assert unpair(table).to_pylist() == [
        {"prompt": "p1", "completion": "c1", "label": True}, {"prompt": "p2", "completion": "c2", "label": True},
        {"prompt": "p1", "completion": "r1", "label": False}, {"prompt": "p2", "completion": "r2", "label": False}]


def test_reward_model_has_one_output(tiny_chat, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "reward"
    code, _, err = cli(capsys, "train", "reward", "--dataset", EXAMPLES / "preference.jsonl", "--model", tiny_chat,
                       "-o", out, *FAST)
    assert code == 0, err
    assert losses(out)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 1 and model.config.pad_token_id is not None
    assert provenance(out)["trl_class"] == "RewardTrainer"


def test_lora_writes_an_adapter(tiny_chat, tmp_path, capsys):
    out = tmp_path / "lora"
    code, stdout, err = cli(capsys, "train", "sft", "--dataset", EXAMPLES / "sft.jsonl", "--model", tiny_chat, "-o", out,
                            *FAST, "--lora", "--set", "lora.r=4", "--set", "lora.alpha=8")
    assert code == 0, err
    assert "wrote the LoRA adapter and tokenizer" in stdout
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["task_type"]) == (4, 8, "CAUSAL_LM")
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    record = provenance(out)
    assert record["lora"] == {"r": 4, "lora_alpha": 8, "lora_dropout": 0.05, "target_modules": "all-linear",
                              "task_type": "CAUSAL_LM"}
    assert record["config"]["learning_rate"] == 2e-4  # 10x SFT's full fine-tuning default


@pytest.mark.parametrize(("trainer", "example", "said"), [
    ("dpo", "ranked.jsonl", ["these rows are `ranked`", "needs `preference` or `implicit_preference`", "`pair` step"]),
    ("reward", "sft.jsonl", ["these rows are `sft`", "sample_responses", "pair"]),
    ("sft", "unpaired_preference.jsonl", ["these rows are `unpaired_preference`", "datakit train kto"]),
    ("kto", "prompt_only.jsonl", ["these rows are `prompt_only`", "generate responses first"]),
])
def test_wrong_record_kind_exits_2_with_a_hint(tiny_chat, tmp_path, capsys, trainer, example, said):
    code, _, err = cli(capsys, "train", trainer, "--dataset", EXAMPLES / example, "--model", tiny_chat,
                       "-o", tmp_path / "out", *FAST)
    assert code == 2
    for text in said:
        assert text in err
    assert not (tmp_path / "out").exists()


def test_invalid_rows_exit_1(tiny_chat, tmp_path, capsys):
    rows = tmp_path / "same.jsonl"
    rows.write_text(json.dumps({"prompt": "Hi", "chosen": "Same.", "rejected": "Same."}) + "\n")
    code, _, err = cli(capsys, "train", "dpo", "--dataset", rows, "--model", tiny_chat, "-o", tmp_path / "out")
    assert code == 1
    assert "1 of 1 rows are not valid `preference` rows" in err


def test_set_values_are_typed_by_the_config_fields():
    from datakit.train.entrypoints import build_settings

    settings = build_settings("dpo", sets=["learning_rate=1e-5", "max_steps=3", "gradient_checkpointing=false",
                                           "loss_type=ipo", "pad_to_multiple_of=8", "run_name=1.0",
                                           "diagnostics.every_n_steps=5", "lora.alpha=4"])
    config = settings.config
    assert config["learning_rate"] == 1e-5 and isinstance(config["learning_rate"], float)
    assert config["max_steps"] == 3 and config["gradient_checkpointing"] is False
    assert config["loss_type"] == ["ipo"] and config["pad_to_multiple_of"] == 8 and config["run_name"] == "1.0"
    assert settings.diagnostics == {"every_n_steps": 5}
    assert settings.lora is not None and settings.lora["lora_alpha"] == 4  # a LoRA setting turns LoRA on
    assert build_settings("sft").lora is None


def test_config_file_then_set(tmp_path):
    from datakit.train.entrypoints import build_settings

    config = tmp_path / "train.yaml"
    config.write_text("learning_rate: 3.0e-6\nbeta: 0.2\nlora:\n  r: 8\ndiagnostics:\n  top_k: 5\n")
    settings = build_settings("dpo", config_file=config, sets=["beta=0.3"])
    assert settings.config["learning_rate"] == 3e-6 and settings.config["beta"] == 0.3
    assert settings.lora is not None and settings.lora["r"] == 8
    assert settings.lora["lora_alpha"] == 32
    assert settings.config["learning_rate"] == 3e-6  # given, so not raised for LoRA
    assert settings.diagnostics == {"top_k": 5}


@pytest.mark.parametrize(("sets", "message"), [
    (["learnig_rate=1e-5"], "unknown DPOConfig field 'learnig_rate' (did you mean 'learning_rate'?)"),
    (["max_steps=many"], "DPOConfig field 'max_steps' takes int, got 'many'"),
    (["lora.rank=8"], "unknown LoraConfig field 'lora.rank'"),
    (["beta"], "--set takes KEY=VALUE"),
    (["model.path=x"], "only lora.*, diagnostics.* keys have dots"),
])
def test_bad_settings_are_usage_errors(sets, message):
    from datakit.train.entrypoints import build_settings

    with pytest.raises(UsageError) as caught:
        build_settings("dpo", sets=sets)
    assert message in str(caught.value)


def test_bad_setting_exits_2_before_reading_data(tiny_chat, tmp_path, capsys):
    code, _, err = cli(capsys, "train", "sft", "--dataset", tmp_path / "missing.jsonl", "--model", tiny_chat,
                       "--set", "num_train_epoch=1")
    assert code == 2 and "did you mean 'num_train_epochs'?" in err


def test_published_version_trains_by_reference(tiny_chat, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # pulled versions go under ~/.cache/datakit
    registry = tmp_path / "registry"
    code, _, err = cli(capsys, "publish", EXAMPLES / "preference.jsonl", "--repo", "acme/prefs", "--version", "1.0.0",
                       "--registry", registry)
    assert code == 0, err
    out = tmp_path / "dpo"
    code, _, err = cli(capsys, "train", "dpo", "--dataset", "acme/prefs@1.0.0", "--registry", registry,
                       "--model", tiny_chat, "-o", out, *FAST)
    assert code == 0, err
    manifest = json.loads((tmp_path / "home/.cache/datakit/datasets/acme/prefs/1.0.0/datakit.json").read_text())
    dataset = provenance(out)["dataset"]
    assert dataset["fingerprint"] == manifest["fingerprint"] == fingerprint_of(EXAMPLES / "preference.jsonl")
    assert (dataset["repo"], dataset["version"], dataset["source"], dataset["registry"]) == (
        "acme/prefs", "1.0.0", "version", str(registry))
    assert losses(out)
    code, _, err = cli(capsys, "train", "dpo", "--dataset", "acme/prefs@1.0.0", "--registry", registry,
                       "--model", tiny_chat, "-o", tmp_path / "other", "--split", "test")
    assert code == 2 and "has no split 'test'; its splits: train" in err


def test_output_folder_is_not_trained_over(tiny_chat, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "train", "sft", "--dataset", EXAMPLES / "sft.jsonl", "--model", tiny_chat, "-o", out)
    assert code == 2 and "--overwrite" in err
    assert os.listdir(out) == ["notes.txt"]


def test_tokenizer_without_chat_template_is_refused_for_conversations(tiny_chat, tmp_path, capsys):
    import shutil

    model = tmp_path / "no-template"
    shutil.copytree(tiny_chat, model)
    (model / "chat_template.jsonl").unlink(missing_ok=True)
    (model / "chat_template.jinja").unlink()
    code, _, err = cli(capsys, "train", "sft", "--dataset", EXAMPLES / "sft.jsonl", "--model", model, "-o",
                       tmp_path / "out", *FAST)
    assert code == 2 and "has no chat template" in err and "--chat-template" in err


def test_non_finite_loss_is_an_error(tiny_chat, tmp_path, capsys):
    out = tmp_path / "nan"
    code, _, err = cli(capsys, "train", "sft", "--dataset", EXAMPLES / "sft.jsonl", "--model", tiny_chat, "-o", out,
                       "--set", "max_steps=3", "--set", "logging_steps=1", "--set", "per_device_train_batch_size=2",
                       "--set", "learning_rate=1e30")
    assert code == 1
    assert "the loss became" in err and "nothing was saved" in err
    assert not (out / "datakit-train.json").exists() and not (out / "model.safetensors").exists()


@pytest.fixture(scope="module")
def magpie_dpo_pairs(tmp_path_factory) -> Path:
    """Preference rows made by the shipped Magpie-DPO recipe (tiny profile) on the session's tiny models."""
    pytest.importorskip("vllm")
    from tests.generate.conftest import build_tiny_models, shipped

    models = build_tiny_models(tmp_path_factory)
    result = shipped(tmp_path_factory.mktemp("magpie-dpo"), models, "magpie_dpo")
    return result.run_dir


def test_magpie_dpo_output_trains_with_dpo_unchanged(magpie_dpo_pairs, tiny_chat, tmp_path, capsys):
    out = tmp_path / "dpo-magpie"
    # The run directory as it is: of its two sinks (ranked, preference), DPO takes the preference pairs.
    code, _, err = cli(capsys, "train", "dpo", "--dataset", magpie_dpo_pairs, "--model", tiny_chat, "-o", out, *FAST)
    assert code == 0, err
    dataset = provenance(out)["dataset"]
    pairs = read_rows(sorted((magpie_dpo_pairs / "output" / "save").glob("*.parquet")))[1]
    assert dataset["fingerprint"] == content_fingerprint(pairs)
    assert (dataset["source"], dataset["record_kind"], dataset["style"]) == ("run", "preference", "conversational")
    assert dataset["rows"] >= 1
    assert losses(out)
    code, _, err = cli(capsys, "train", "sft", "--dataset", magpie_dpo_pairs, "--model", tiny_chat, "-o", out)
    assert code == 2 and "choose one with --sink" in err
