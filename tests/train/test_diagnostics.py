"""Over-optimisation diagnostics: the top-k measurements on hand-made logits, and the callback in real DPO runs."""

from __future__ import annotations

import logging
import math

import pytest

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")

from datakit.errors import UsageError
from datakit.testing import build_chat_model
from datakit.train.diagnostics import (
    PreferenceDiagnostics,
    collate,
    diagnostics_callback,
    holdout_indices,
    margins,
    parse_config,
    sequence_logprobs,
    tokenize_examples,
    topk_entropy,
    topk_mass,
)

KEYS = ["diagnostics/topk_entropy", "diagnostics/topk_mass", "diagnostics/margin_mean", "diagnostics/margin_positive",
        "diagnostics/chosen_logp", "diagnostics/rejected_logp", "diagnostics/entropy_reversal",
        "diagnostics/mass_decline"]
TOPICS = ["rain", "tea", "maps", "bees", "glass", "wind"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_chat_model(tmp_path_factory.mktemp("diagnostics") / "llama3", "llama3")


@pytest.fixture(scope="module")
def tokenizer(model_path):
    return transformers.AutoTokenizer.from_pretrained(model_path)


def load_model(model_path):
    return transformers.AutoModelForCausalLM.from_pretrained(model_path)


def preference_rows(n=8):
    return [{"prompt": [{"role": "user", "content": f"Tell me about {TOPICS[i % len(TOPICS)]}, please {i}."}],
             "chosen": [{"role": "assistant", "content": f"{TOPICS[i % len(TOPICS)]} is a fine topic."}],
             "rejected": [{"role": "assistant", "content": "No."}]} for i in range(n)]


# --- pure measurements ------------------------------------------------------------------------------------------


def reference(logits, mask, k):
    """Per example: mean over masked positions of H_k (bits, renormalised top k) and M_k; then mean over examples."""
    entropies, masses = [], []
    for row in range(logits.shape[0]):
        h, m = [], []
        for pos in range(logits.shape[1]):
            if not mask[row, pos]:
                continue
            p = sorted(torch.softmax(logits[row, pos].double(), dim=-1).tolist(), reverse=True)[:k]
            total = sum(p)
            h.append(-sum(x / total * math.log2(x / total) for x in p))
            m.append(total)
        if h:
            entropies.append(sum(h) / len(h))
            masses.append(sum(m) / len(m))
    return sum(entropies) / len(entropies), sum(masses) / len(masses)


def test_uniform_logits_give_log2_k_and_k_over_v():
    logits = torch.zeros(2, 5, 50)
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert topk_entropy(logits, mask) == pytest.approx(math.log2(10), abs=1e-5)
    assert topk_mass(logits, mask) == pytest.approx(10 / 50, abs=1e-5)
    assert topk_entropy(logits, mask, k=4) == pytest.approx(2.0, abs=1e-5)
    assert topk_mass(logits, mask, k=4) == pytest.approx(4 / 50, abs=1e-5)


def test_peaked_logits_give_zero_entropy_and_full_mass():
    logits = torch.zeros(1, 3, 50)
    logits[0, torch.arange(3), torch.tensor([4, 9, 17])] = 40.0
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert topk_entropy(logits, mask) == pytest.approx(0.0, abs=1e-4)
    assert topk_mass(logits, mask) == pytest.approx(1.0, abs=1e-5)


def test_matches_a_straightforward_reference_and_masks_out_prompt_and_padding():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 40, generator=generator) * 3
    # Row 0: prompt of 2, completion of 5; row 1: prompt of 3, completion of 2, then padding; row 2: nothing.
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, 2:] = True
    mask[1, 3:5] = True
    expected_h, expected_m = reference(logits, mask, 10)
    assert topk_entropy(logits, mask) == pytest.approx(expected_h, abs=1e-5)
    assert topk_mass(logits, mask) == pytest.approx(expected_m, abs=1e-5)
    # Whatever sits at masked-out positions changes nothing.
    changed = logits.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 40, generator=generator) * 30
    assert topk_entropy(changed, mask) == pytest.approx(expected_h, abs=1e-5)
    assert topk_mass(changed, mask) == pytest.approx(expected_m, abs=1e-5)
    # Each example weighs the same, however many completion tokens it has.
    only_1 = mask.clone()
    only_1[0] = False
    assert topk_entropy(logits, mask) != pytest.approx(reference(logits, only_1, 10)[0], abs=1e-3)


def test_bad_shapes_and_empty_masks_are_refused():
    with pytest.raises(ValueError, match="no positions"):
        topk_entropy(torch.zeros(1, 3, 20), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch, positions"):
        topk_mass(torch.zeros(3, 20), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="k must be at least 1"):
        topk_mass(torch.zeros(1, 3, 20), torch.ones(1, 3, dtype=torch.bool), k=0)


# --- tokenization, log-probs and margins on the tiny model -----------------------------------------------------


def test_conversational_completion_is_what_follows_the_generation_prompt(tokenizer):
    [example] = tokenize_examples(preference_rows(1), tokenizer)
    ids, start = example.chosen
    assert tokenizer.decode(ids[start:]) == "rain is a fine topic.<|eot_id|>"
    assert tokenizer.decode(ids[:start]).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    rejected_ids, rejected_start = example.rejected
    assert tokenizer.decode(rejected_ids[rejected_start:]) == "No.<|eot_id|>"


def test_plain_text_gets_eos_and_truncated_away_completions_are_skipped(tokenizer):
    rows = [{"prompt": "Say hi:", "chosen": " hi", "rejected": " bye"},
            {"prompt": "A long prompt " * 20, "chosen": " ok", "rejected": " no"}]
    examples = tokenize_examples(rows, tokenizer, max_length=12)
    assert len(examples) == 1
    ids, start = examples[0].chosen
    assert tokenizer.decode(ids[start:]) == " hi<|eot_id|>"
    assert ids[0] == tokenizer.bos_token_id


def test_sequence_logprobs_ignore_padding_and_prompt(model_path, tokenizer):
    model = load_model(model_path).eval()
    short, long = [e.chosen for e in tokenize_examples(preference_rows(2) + [
        {**preference_rows(1)[0], "chosen": [{"role": "assistant", "content": "a much longer reply " * 4}]}],
        tokenizer)][1:]
    with torch.no_grad():
        together = sequence_logprobs(model, collate([short, long], tokenizer.pad_token_id))
        alone = [sequence_logprobs(model, collate([seq], tokenizer.pad_token_id)) for seq in (short, long)]
        ids, start = short
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1], dim=-1)
        by_hand = sum(float(logp[t - 1, ids[t]]) for t in range(start, len(ids)))
    assert float(together.total[0]) == pytest.approx(by_hand, abs=1e-4)
    assert float(together.mean[0]) == pytest.approx(by_hand / (len(ids) - start), abs=1e-5)
    for i in range(2):
        assert float(together.total[i]) == pytest.approx(float(alone[i].total[0]), abs=1e-4)


def test_margins_are_antisymmetric_and_count_positive_pairs(model_path, tokenizer):
    model = load_model(model_path).eval()
    examples = tokenize_examples(preference_rows(6), tokenizer)
    swapped = [type(e)(e.rejected, e.chosen) for e in examples]
    with torch.no_grad():
        forward = margins(model, examples, pad_token_id=tokenizer.pad_token_id, batch_size=4)
        backward = margins(model, swapped, pad_token_id=tokenizer.pad_token_id, batch_size=4)
        chosen = sequence_logprobs(model, collate([e.chosen for e in examples], tokenizer.pad_token_id)).total
        rejected = sequence_logprobs(model, collate([e.rejected for e in examples], tokenizer.pad_token_id)).total
    assert forward.mean == pytest.approx(-backward.mean, abs=1e-4)
    assert forward.mean == pytest.approx(float((chosen - rejected).mean()), abs=1e-4)
    assert forward.positive == pytest.approx(float((chosen > rejected).float().mean()))
    assert forward.positive + backward.positive == pytest.approx(1.0)


# --- the callback in real DPO runs ------------------------------------------------------------------------------


def dpo_trainer(model_path, tokenizer, tmp_path, callback, *, max_steps=3, peft_config=None):
    args = trl.DPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=2, learning_rate=5e-3,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, max_length=64,
        seed=0, dataloader_num_workers=0)
    trainer = trl.DPOTrainer(model=load_model(model_path), args=args, train_dataset=datasets.Dataset.from_list(
        preference_rows(8)), processing_class=tokenizer, peft_config=peft_config)
    if callback is not None:
        callback.attach(trainer)
    return trainer


def diagnostics_entries(trainer):
    return {entry["step"]: entry for entry in trainer.state.log_history if "diagnostics/topk_entropy" in entry}


def test_dpo_run_logs_diagnostics_at_the_expected_steps(model_path, tokenizer, tmp_path, caplog, capsys):
    held_out = datasets.Dataset.from_list(preference_rows(5))
    callback = diagnostics_callback({"every_n_steps": 2, "holdout": 1.0, "batch_size": 2, "entropy_drop": 100.0,
                                     "mass_drop": None}, held_out, tokenizer)
    assert len(callback.examples) == 5 and callback.holdout_indices == [0, 1, 2, 3, 4]
    trainer = dpo_trainer(model_path, tokenizer, tmp_path, callback)
    with caplog.at_level(logging.WARNING, logger="datakit.train"):
        trainer.train()
    entries = diagnostics_entries(trainer)
    # Before the first step, every 2 steps, and at the end of training.
    assert sorted(entries) == [0, 2, 3]
    for entry in entries.values():
        assert set(KEYS) <= set(entry)
        assert all(math.isfinite(entry[key]) for key in KEYS)
        assert 0 < entry["diagnostics/topk_mass"] <= 1 and 0 <= entry["diagnostics/topk_entropy"] <= math.log2(10)
        assert 0 <= entry["diagnostics/margin_positive"] <= 1
        assert entry["diagnostics/entropy_reversal"] == 0 and entry["diagnostics/mass_decline"] == 0
    # Training moved the policy: the chosen completions got likelier and the margin grew.
    assert entries[3]["diagnostics/margin_mean"] > entries[0]["diagnostics/margin_mean"]
    # The trainer's own per-step entries are all still there, with DPO's metrics in them, not in ours.
    losses = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in losses] == [1, 2, 3]
    assert all("rewards/margins" in entry for entry in losses)
    assert not any("rewards/margins" in entry for entry in entries.values())
    assert trainer.model.training
    assert not [r for r in caplog.records if r.name.startswith("datakit.train")]
    assert "'diagnostics/topk_entropy'" in capsys.readouterr().out  # the console logger printed them


def test_thresholds_that_must_fire_warn_and_are_recorded_with_a_peft_model(model_path, tokenizer, tmp_path, caplog):
    peft = pytest.importorskip("peft")
    callback = diagnostics_callback({"every_n_steps": 2, "holdout": 4, "min_mass": 1.1}, datasets.Dataset.from_list(
        preference_rows(8)), tokenizer)
    trainer = dpo_trainer(model_path, tokenizer, tmp_path, callback, max_steps=2, peft_config=peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    assert isinstance(trainer.model, peft.PeftModel)
    with caplog.at_level(logging.WARNING, logger="datakit.train"):
        trainer.train()
    entries = diagnostics_entries(trainer)
    assert sorted(entries) == [0, 2]
    assert [entry["diagnostics/mass_decline"] for entry in entries.values()] == [1.0, 1.0]
    warnings = [r for r in caplog.records if r.name.startswith("datakit.train") and "mass diminishing" in r.message]
    assert len(warnings) == 2 and "below min_mass=1.1" in warnings[0].message
    assert trainer.model.training


def test_callback_added_without_its_trainer_says_how_to_add_it(model_path, tokenizer, tmp_path):
    callback = PreferenceDiagnostics(preference_rows(2), tokenizer, every_n_steps=1)
    trainer = dpo_trainer(model_path, tokenizer, tmp_path, None, max_steps=1)
    trainer.add_callback(callback)
    with pytest.raises(UsageError, match=r"attach\(trainer\)"):
        trainer.train()


# --- config and held-out rows ----------------------------------------------------------------------------------


def test_disabled_config_gives_no_callback(tokenizer):
    assert diagnostics_callback({"enabled": False}, datasets.Dataset.from_list(preference_rows(3)), tokenizer) is None


@pytest.mark.parametrize(("config", "message"), [
    ({"every_n_step": 10}, r"unknown parameter 'every_n_step' \(did you mean 'every_n_steps'\?\)"),
    ({"every_n_steps": 0}, "every_n_steps must be at least 1"),
    ({"top_k": "ten"}, "expected integer"),
    ({"holdout": 1.5}, r"holdout as a fraction must be in \(0, 1\]"),
    ({"mass_drop": -0.1}, "mass_drop must not be negative"),
])
def test_bad_config_keys_give_a_clear_error(config, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_config(config)
    assert str(info.value).startswith("diagnostics.")


def test_dataset_without_preference_columns_is_refused(tokenizer):
    with pytest.raises(UsageError, match=r"prompt, chosen, rejected.*columns \['messages'\]"):
        diagnostics_callback({}, datasets.Dataset.from_list([{"messages": "x"}]), tokenizer)


def test_holdout_takes_whole_prompts_with_a_fixed_seed():
    rows = [{"prompt": f"p{i % 4}", "chosen": "a", "rejected": "b"} for i in range(12)]
    dataset = datasets.Dataset.from_list(rows)
    first = holdout_indices(dataset, 0.25, seed=3)
    assert first == holdout_indices(dataset, 0.25, seed=3)
    prompts = {rows[i]["prompt"] for i in first}
    assert len(first) == 3 and len(prompts) == 1  # 3 rows: exactly one prompt, all of its rows
    assert len(holdout_indices(dataset, 4, seed=3)) == 6  # whole prompts: 4 rows need two prompts of 3
    assert holdout_indices(dataset, 100) == list(range(12))


def test_unpaired_rows_measure_desirable_completions_and_pair_where_they_can(model_path, tokenizer):
    rows = []
    for i, pair in enumerate(preference_rows(3)):
        rows.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
        if i < 2:  # the third prompt has only a desirable completion
            rows.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
    rows.append({"prompt": preference_rows(4)[3]["prompt"], "completion": [{"role": "assistant", "content": "Eh."}],
                 "label": False})
    callback = diagnostics_callback({"holdout": 1.0}, datasets.Dataset.from_list(rows), tokenizer)
    assert len(callback.examples) == 3
    assert [e.rejected is not None for e in callback.examples] == [True, True, False]
    model = load_model(model_path).train()
    metrics = callback.measure(model)
    assert model.training  # measured in eval mode, then put back as it was
    assert callback.measure(model.eval()) == pytest.approx(metrics) and not model.training
    assert set(metrics) == set(KEYS) - {"diagnostics/entropy_reversal", "diagnostics/mass_decline"}
    only_desirable = diagnostics_callback({"holdout": 1.0}, datasets.Dataset.from_list(
        [row for row in rows if row["label"]]), tokenizer)
    assert set(only_desirable.measure(load_model(model_path))) == {
        "diagnostics/topk_entropy", "diagnostics/topk_mass", "diagnostics/chosen_logp"}
