"""`datakit train {sft,dpo,kto,reward}`: run a TRL trainer on a checked datakit dataset and keep its provenance.

Each trainer is one row of `TRAINERS`: its TRL config and trainer classes, the defaults datakit adds to TRL's own,
and whether preference diagnostics apply. Settings come from TRL's config defaults, then `TRAINERS[...].defaults`,
then a `--config` file (YAML or JSON of the config's fields, plus optional `lora:` and `diagnostics:` sections),
then `--set key=value` (typed by the config dataclass's field types; `lora.*` and `diagnostics.*` keys go to
those sections). The output folder gets the final model and tokenizer (or LoRA adapter), `metrics.jsonl` (the
trainer's log history), `trainer_state.json` and `datakit-train.json` (provenance, see `datakit.train.provenance`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError, EngineError, UsageError
if typing.TYPE_CHECKING:
    from datakit.train.data import TrainingData

SECTIONS = ("lora", "diagnostics")
# Short names for LoRA settings (`lora.alpha=32`), as LoRA papers and most recipes spell them.
LORA_ALIASES = {"alpha": "lora_alpha", "dropout": "lora_dropout"}
# r=16, alpha=2r and every linear layer: the setting "LoRA Without Regret" (Schulman et al., Thinking Machines,
# 2025) finds to match full fine-tuning in post-training, where attention-only adapters fall behind.
LORA_DEFAULTS: dict[str, Any] = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
# The same study finds LoRA's best learning rate about 10x full fine-tuning's, for any rank.
LORA_LR_FACTOR = 10.0
DEFAULT_OUTPUT_ROOT = Path("runs") / "train"


class TrainingError(DatakitError):
    """Training ran but went wrong: the loss stopped being a finite number (exit 1)."""

    exit_code = 1


@dataclass(frozen=True)
class TrainerSpec:
    """One `datakit train` entrypoint: the TRL classes it runs and what datakit sets beyond TRL's defaults."""

    name: str
    config_class: str  # in `trl`
    trainer_class: str  # in `trl`
    lora_task_type: str  # peft TaskType
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    diagnostics: bool = False  # preference diagnostics (top-k entropy, margins) apply


# Defaults for every trainer: the final model is saved once, by datakit, into --output (no step checkpoints), no
# experiment tracker is contacted, the first step is logged so even a short run shows its loss, and a NaN or
# infinite loss is logged as it is (transformers otherwise logs the running mean in its place, hiding it).
COMMON_DEFAULTS: dict[str, Any] = {"report_to": "none", "save_strategy": "no", "logging_first_step": True,
                                   "logging_nan_inf_filter": False}

TRAINERS: dict[str, TrainerSpec] = {
    "sft": TrainerSpec("sft", "SFTConfig", "SFTTrainer", "CAUSAL_LM",
                       "supervised fine-tuning on `sft` (messages) or `prompt_completion` rows"),
    "dpo": TrainerSpec("dpo", "DPOConfig", "DPOTrainer", "CAUSAL_LM",
                       "direct preference optimization on `preference` rows", diagnostics=True),
    "kto": TrainerSpec("kto", "KTOConfig", "KTOTrainer", "CAUSAL_LM",
                       "Kahneman-Tversky optimization on `unpaired_preference` (or `preference`) rows",
                       diagnostics=True),
    "reward": TrainerSpec("reward", "RewardConfig", "RewardTrainer", "SEQ_CLS",
                          "a reward model (sequence classifier, one output) on `preference` rows"),
}


@dataclass
class Settings:
    """Checked settings: TRL config fields, LoRA fields (None: no LoRA) and the diagnostics section."""

    config: dict[str, Any]
    lora: dict[str, Any] | None
    diagnostics: dict[str, Any]


@dataclass
class TrainResult:
    """What a finished training run wrote and logged."""

    output: Path
    data: TrainingData
    metrics: dict[str, Any]
    log_history: list[dict[str, Any]]
    lora: bool
    provenance: Path
    notes: list[str]


# ---------------------------------------------------------------------------------------------------------------
# Settings: --config and --set, typed by the config dataclass


def _config_class(spec: TrainerSpec) -> type:
    import trl

    return getattr(trl, spec.config_class)


def _field_types(cls: type) -> dict[str, Any]:
    """The settable fields of a config dataclass and their resolved types."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(True, value converted to `tp`) when `value` can be one, else (False, None)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        # Non-string members first, so "8" becomes 8 for `int | str | None` and "none" None for `str | None`.
        for member in sorted(typing.get_args(tp), key=lambda m: m is str):
            ok, converted = _coerce(value, member)
            if ok:
                return True, converted
        return False, None
    if tp is type(None):
        return (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))), None
    if tp is bool:
        return isinstance(value, bool), value
    if tp in (int, float):
        if isinstance(value, str):
            try:
                value = tp(value)
            except ValueError:
                return False, None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (tp is int and not isinstance(value, int)):
            return False, None
        return True, tp(value)
    if tp is str:
        return isinstance(value, str), value
    if tp in (list, tuple) or origin in (list, tuple):
        items = value if isinstance(value, (list, tuple)) else [value]
        args = typing.get_args(tp)
        member = args[0] if args else Any
        converted = [_coerce(item, member) for item in items]
        return all(ok for ok, _ in converted), [v for _, v in converted]
    if tp is dict or origin is dict:
        return isinstance(value, dict), value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        choices = [m.value for m in tp]
        return value in choices, value
    return True, value  # a type without a simple rule: the config's own checks decide


def _parse_text(text: str) -> Any:
    """A --set value: YAML scalars and flow collections (`3`, `1.0e-5`, `true`, `[a, b]`, `{k: v}`), else the text."""
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def _typed(owner: str, key: str, value: Any, tp: Any, text: str | None) -> Any:
    ok, converted = _coerce(value, tp)
    if not ok and text is not None:
        ok, converted = _coerce(text, tp)  # `run_name=1.0` is the text "1.0" for a string field
    if not ok:
        shown = text if text is not None else json.dumps(value, default=str)
        raise UsageError(f"{owner} field '{key}' takes {_type_name(tp)}, got {shown!r}")
    return converted


def _check_key(owner: str, key: str, fields: dict[str, Any], section: str = "") -> None:
    from datakit.pipeline.params import did_you_mean

    if key not in fields:
        raise UsageError(f"unknown {owner} field '{section}{key}'{did_you_mean(key, fields)}")


def _load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the config file: {exc.strerror or exc}", path=str(path)) from None
    try:
        document = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"not valid {'JSON' if str(path).endswith('.json') else 'YAML'}: {exc}",
                         path=str(path)) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise UsageError("a training config must be a mapping of config fields to values", path=str(path))
    return document


def _split_sets(sets: Sequence[str]) -> dict[str, dict[str, str]]:
    """--set KEY=VALUE items by section ("" for the TRL config), the values still text."""
    found: dict[str, dict[str, str]] = {"": {}, **{s: {} for s in SECTIONS}}
    for item in sets:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        section, dot, rest = key.partition(".")
        if dot and section in SECTIONS:
            found[section][rest] = value
        elif dot:
            raise UsageError(f"--set {key}: only {', '.join(s + '.*' for s in SECTIONS)} keys have dots; "
                             "other keys are fields of the trainer's TRL config")
        else:
            found[""][key] = value
    return found


def build_settings(trainer: str, *, config_file: str | os.PathLike[str] | None = None,
                   sets: Sequence[str] = (), lora: bool = False) -> Settings:
    """Check and merge the settings of a run: datakit's defaults, then `config_file`, then `sets`.

    Unknown keys are errors with a close-match hint, values are typed by the config dataclass's field types, and
    LoRA is on with `lora` or when any LoRA setting is given.
    """
    spec = TRAINERS[trainer]
    cls = _config_class(spec)
    fields = _field_types(cls)
    document = _load_config_file(config_file) if config_file is not None else {}
    sections = {s: document.pop(s, None) or {} for s in SECTIONS}
    for name, section in sections.items():
        if not isinstance(section, dict):
            raise UsageError(f"the '{name}' section must be a mapping", path=str(config_file))
    texts = _split_sets(sets)

    values: dict[str, Any] = {**COMMON_DEFAULTS, "bf16": _bf16_available(), **spec.defaults}
    for source, items in ((None, document), ("set", texts[""])):
        for key, value in items.items():
            if key == "output_dir":
                raise UsageError("set the output folder with --output, not output_dir")
            _check_key(spec.config_class, key, fields)
            text = value if source == "set" else None
            values[key] = _typed(spec.config_class, key, _parse_text(value) if text is not None else value,
                                 fields[key], text)
    if values.get("bf16") and values.get("fp16"):
        values["bf16"] = False  # fp16 asked for explicitly wins over the bf16 default

    lora_values = _lora_settings(spec, sections["lora"], texts["lora"]) if (
        lora or sections["lora"] or texts["lora"]) else None
    if lora_values is not None and "learning_rate" not in document and "learning_rate" not in texts[""]:
        values["learning_rate"] = float(f"{fields_default(cls, 'learning_rate') * LORA_LR_FACTOR:.6g}")
    diagnostics = dict(sections["diagnostics"])
    diagnostics.update({k: _parse_text(v) for k, v in texts["diagnostics"].items()})
    return Settings(values, lora_values, diagnostics)


def fields_default(cls: type, name: str) -> Any:
    """The default of one config dataclass field."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _lora_settings(spec: TrainerSpec, section: dict[str, Any], texts: dict[str, str]) -> dict[str, Any]:
    from peft import LoraConfig

    fields = _field_types(LoraConfig)
    values: dict[str, Any] = {**LORA_DEFAULTS, "task_type": spec.lora_task_type}
    for key, value, text in [(k, v, None) for k, v in section.items()] + [(k, _parse_text(t), t)
                                                                            for k, t in texts.items()]:
        key = LORA_ALIASES.get(key, key)
        _check_key("LoraConfig", key, fields, "lora.")
        values[key] = _typed("LoraConfig", f"lora.{key}", value, fields[key], text)
    return values


def _bf16_available() -> bool:
    """bf16 where the hardware has it (TRL turns it on everywhere, which CPUs run slowly or not at all)."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


# ---------------------------------------------------------------------------------------------------------------
# Running a trainer


def default_output(trainer: str, dataset_name: str) -> Path:
    """`runs/train/<trainer>-<dataset name>`."""
    return DEFAULT_OUTPUT_ROOT / f"{trainer}-{dataset_name}"


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise UsageError("--output names a file, not a folder", path=str(output))
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise UsageError("the output folder is not empty; choose another with --output, or pass --overwrite to "
                         "train into it again", path=str(output))


def _load_tokenizer(model: str, revision: str | None, trust_remote_code: bool, chat_template: str | None,
                    conversational: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise EngineError(f"cannot load the tokenizer of '{model}': {exc}") from None
    if chat_template is not None:
        try:
            tokenizer.chat_template = Path(chat_template).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the chat template: {exc.strerror or exc}", path=chat_template) from None
    if conversational and not tokenizer.chat_template:
        raise UsageError(f"the tokenizer of '{model}' has no chat template, which conversational rows need: use a "
                         "chat (instruct) model, or give a Jinja template with --chat-template FILE")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _finite_loss_guard() -> Any:
    """A callback that stops training at the first logged loss that is not a finite number."""
    from transformers import TrainerCallback

    class FiniteLoss(TrainerCallback):
        def __init__(self) -> None:
            self.bad: tuple[int, float] | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
            for key in ("loss", "train_loss"):
                value = (logs or {}).get(key)
                if isinstance(value, (int, float)) and not math.isfinite(value) and self.bad is None:
                    self.bad = (state.global_step, value)
                    control.should_training_stop = True
            return control

    return FiniteLoss()


def _diagnostics(spec: TrainerSpec, settings: Settings, dataset: Any, tokenizer: Any, notes: list[str]) -> Any:
    """The preference-diagnostics callback for DPO and KTO (None when off or not installed).

    Diagnostics measure held-out prompts, which are then not trained on. With no `diagnostics` settings given,
    they are left off (with a note) when the held-out rows would be half the dataset or more.
    """
    if not spec.diagnostics:
        return None
    try:
        from datakit.train.diagnostics import diagnostics_callback
    except ModuleNotFoundError as exc:
        if exc.name != "datakit.train.diagnostics":
            raise
        notes.append("preference diagnostics are not available in this installation")
        return None
    callback = diagnostics_callback(settings.diagnostics, dataset, tokenizer)
    if callback is None:
        return None
    held_out = len(callback.holdout_indices)
    if not settings.diagnostics and 2 * held_out >= len(dataset):
        notes.append(f"preference diagnostics are off: holding out {held_out:,} of {len(dataset):,} rows would "
                     "leave too few to train on (turn them on with --set diagnostics.holdout=N)")
        return None
    if held_out >= len(dataset):
        raise UsageError(f"diagnostics hold out all {len(dataset):,} rows, leaving none to train on: lower "
                         "diagnostics.holdout, or set diagnostics.enabled=false")
    notes.append(f"held out {held_out:,} rows (whole prompts) for preference diagnostics; they are not trained on")
    return callback


def _losses(history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(int(entry.get("step", 0)), float(entry[key])) for entry in history
            for key in ("loss", "train_loss") if isinstance(entry.get(key), (int, float))]


def train(trainer: str, dataset: str | os.PathLike[str], model: str, *, output: str | os.PathLike[str] | None = None,
          config_file: str | os.PathLike[str] | None = None, sets: Sequence[str] = (), lora: bool = False,
          split: str = "train", registry: str | os.PathLike[str] | None = None, revision: str | None = None,
          chat_template: str | None = None, overwrite: bool = False, sink: str | None = None,
          command: Sequence[str] | None = None) -> TrainResult:
    """Train `model` with TRL's `trainer` (sft, dpo, kto or reward) on the rows `dataset` names.

    Checks the settings, then the rows (kind and validity, see `datakit.train.data`), then trains, saves the final
    model and tokenizer (or LoRA adapter) into `output` with the log history and `datakit-train.json`. Raises
    TrainingError when a logged loss is not finite. Example:
    `train("dpo", "acme/prefs@1.0.0", "Qwen/Qwen2.5-0.5B-Instruct", lora=True, sets=["max_steps=100"])`.
    """
    import trl

    from datakit.train.data import prepare, resolve_dataset, to_dataset
    from datakit.train.provenance import write_provenance

    if trainer not in TRAINERS:
        from datakit.pipeline.params import did_you_mean

        raise UsageError(f"unknown trainer '{trainer}'{did_you_mean(trainer, TRAINERS)}; "
                         f"choose one of {', '.join(TRAINERS)}")
    spec = TRAINERS[trainer]
    settings = build_settings(trainer, config_file=config_file, sets=sets, lora=lora)
    source = resolve_dataset(dataset, registry=registry, split=split, trainer=trainer, sink=sink)
    data = prepare(trainer, source)
    out = Path(output) if output is not None else default_output(trainer, source.name)
    _check_output(out, overwrite)

    values = dict(settings.config)
    if revision is not None:
        values["model_init_kwargs"] = {**(values.get("model_init_kwargs") or {}), "revision": revision}
    try:
        config = getattr(trl, spec.config_class)(output_dir=str(out), **values)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"the {spec.config_class} settings do not work together: {exc}") from None
    tokenizer = _load_tokenizer(model, revision, config.trust_remote_code, chat_template, data.conversational)
    peft_config = None
    if settings.lora is not None:
        from peft import LoraConfig

        try:
            peft_config = LoraConfig(**settings.lora)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"the LoRA settings do not work: {exc}") from None

    train_dataset = to_dataset(data.table)
    notes = list(data.notes)
    diagnostics = _diagnostics(spec, settings, train_dataset, tokenizer, notes)
    if diagnostics is not None:
        held_out = set(diagnostics.holdout_indices)
        train_dataset = train_dataset.select([i for i in range(len(train_dataset)) if i not in held_out])
        data.held_out = len(held_out)
    guard = _finite_loss_guard()
    try:
        runner = getattr(trl, spec.trainer_class)(model=model, args=config, train_dataset=train_dataset,
                                                  processing_class=tokenizer, peft_config=peft_config,
                                                  callbacks=[guard])
    except OSError as exc:
        raise EngineError(f"cannot load the model '{model}': {exc}") from None
    if diagnostics is not None:
        diagnostics.attach(runner)
    result = runner.train()
    history = list(runner.state.log_history)
    bad = guard.bad or next(((step, loss) for step, loss in _losses(history) if not math.isfinite(loss)), None)
    if bad is not None:
        raise TrainingError(f"the loss became {bad[1]} at step {bad[0]}; nothing was saved. Lower learning_rate "
                            "(--set learning_rate=...), check the rows for empty or extreme texts, or train in "
                            "fp32 (--set bf16=false)")
    if not _losses(history):
        raise TrainingError("the trainer logged no loss; nothing was saved (did it run any step? check max_steps "
                            "and num_train_epochs)")

    out.mkdir(parents=True, exist_ok=True)
    runner.save_model(str(out))
    runner.state.save_to_json(str(out / "trainer_state.json"))
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as handle:
        for entry in history:
            handle.write(json.dumps(entry, default=float) + "\n")
    commit = getattr(getattr(runner.model, "config", None), "_commit_hash", None)
    provenance = write_provenance(out, trainer=spec, data=data, config=config, settings=settings, model=model,
                                  revision=revision, commit=commit, metrics=dict(result.metrics), command=command,
                                  notes=notes)
    return TrainResult(out, data, dict(result.metrics), history, settings.lora is not None, provenance, notes)
