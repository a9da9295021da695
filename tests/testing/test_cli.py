"""`datakit tiny-model`: builds the model, prints its folder, and reports a bad family as a usage error."""

from __future__ import annotations

import json

import pytest

from datakit.cli import main

pytest.importorskip("transformers")


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_tiny_model_prints_the_folder(tmp_path, capsys):
    out_dir = tmp_path / "model"
    code, out, _ = run(capsys, "tiny-model", out_dir, "--family", "chatml", "--seed", 2)
    assert code == 0
    assert out.splitlines() == [str(out_dir)]
    assert json.loads((out_dir / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]
    assert json.loads((out_dir / "datakit_tiny_model.json").read_text())["seed"] == 2


def test_tiny_model_reward(tmp_path, capsys):
    code, _, _ = run(capsys, "tiny-model", tmp_path / "rm", "--reward", "--overwrite")
    assert code == 0
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert len(config["id2label"]) == 1


def test_tiny_model_unknown_family_exits_2(tmp_path, capsys):
    code, out, err = run(capsys, "tiny-model", tmp_path / "m", "--family", "llama4")
    assert code == 2
    assert out == ""
    assert err.startswith("datakit: error:")
    assert not (tmp_path / "m").exists()
