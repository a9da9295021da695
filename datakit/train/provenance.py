"""`datakit-train.json`: what a trained model was trained on, with what, and how; no tokens or secrets.

```json
{"format": "datakit-train/1", "trainer": "dpo", "trl_class": "DPOTrainer",
 "dataset": {"ref": "acme/prefs@1.0.0", "source": "version", "name": "prefs", "fingerprint": "sha256:...",
             "record_kind": "preference", "style": "conversational", "rows": 118, "trained_rows": 118,
             "converted": null, "held_out": 0, "registry": null, "repo": "acme/prefs", "version": "1.0.0"},
 "model": {"path": "...", "revision": null, "commit": null},
 "lora": {"r": 16, ...} | null, "config": {...TRL config fields...}, "diagnostics": {...},
 "metrics": {"train_loss": ...}, "packages": {...}, "command": ["datakit", "train", ...], "created": "..."}
```
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datakit.train.data import TrainingData
    from datakit.train.entrypoints import Settings, TrainerSpec

FORMAT = "datakit-train/1"
FILENAME = "datakit-train.json"
REDACTED = "<redacted>"
# Keys whose values are credentials wherever they appear (config fields, model_init_kwargs, --set items).
SECRET_KEYS = frozenset({"token", "hub_token", "use_auth_token", "api_key", "push_to_hub_token"})
# Config fields ending in `_token` that name vocabulary tokens, not credentials (TrainingArguments.to_dict masks
# every `*_token` field; these are put back).
VOCABULARY_TOKENS = ("pad_token", "eos_token", "bos_token", "unk_token")


def _is_secret(key: str) -> bool:
    return key in SECRET_KEYS or (key.endswith("_token") and key not in VOCABULARY_TOKENS)


def scrub(value: Any) -> Any:
    """`value` with the values of credential keys replaced by `<redacted>`, at every depth."""
    if isinstance(value, dict):
        return {k: (REDACTED if _is_secret(str(k)) and v is not None else scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def scrub_command(command: Sequence[str]) -> list[str]:
    """A command line with the values of `--set` credentials (e.g. `hub_token=...`) redacted."""
    out = []
    for item in command:
        key, sep, _ = item.partition("=")
        out.append(f"{key}={REDACTED}" if sep and _is_secret(key.split(".")[-1].lstrip("-")) else item)
    return out


def config_dict(config: Any) -> dict[str, Any]:
    """A TRL config as plain JSON values: `to_dict()` (enums as values), vocabulary tokens as set, credentials
    redacted when set and null when not."""
    values = config.to_dict()
    for name in values:
        if name.endswith("_token"):
            actual = getattr(config, name, None)
            values[name] = actual if name in VOCABULARY_TOKENS or actual is None else REDACTED
    return json.loads(json.dumps(scrub(values), default=str))


def build_provenance(*, trainer: TrainerSpec, data: TrainingData, config: Any, settings: Settings, model: str,
                     revision: str | None, commit: str | None, metrics: dict[str, Any],
                     command: Sequence[str] | None, notes: Sequence[str] = ()) -> dict[str, Any]:
    """The provenance record of one training run."""
    from datakit.hub.manifest import package_versions, utc_now

    source = data.source
    dataset: dict[str, Any] = {
        "ref": source.ref, "source": source.kind, "name": source.name, "fingerprint": data.fingerprint,
        "record_kind": data.record_kind, "style": data.style, "rows": data.source_rows, "trained_rows": data.rows,
        "converted": data.converted, "held_out": data.held_out,
    }
    if source.manifest:
        dataset.update(repo=source.manifest.get("repo"), version=source.manifest.get("version"))
    if source.registry is not None:
        dataset["registry"] = source.registry
    model_path = model if not os.path.isdir(model) else str(Path(model).resolve())
    return {
        "format": FORMAT,
        "trainer": trainer.name,
        "trl_class": trainer.trainer_class,
        "dataset": dataset,
        "model": {"path": model_path, "revision": revision, "commit": commit},
        "lora": scrub(settings.lora) if settings.lora is not None else None,
        "config": config_dict(config),
        "diagnostics": scrub(settings.diagnostics) if trainer.diagnostics else None,
        "metrics": json.loads(json.dumps(metrics, default=float)),
        "notes": list(notes),
        "packages": {**package_versions(), **_training_packages()},
        "command": scrub_command(command) if command is not None else None,
        "created": utc_now(),
    }


def _training_packages() -> dict[str, str]:
    import importlib.metadata

    found = {}
    for name in ("peft", "accelerate"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def write_provenance(folder: str | os.PathLike[str], **record: Any) -> Path:
    """Write `datakit-train.json` into `folder` (written to a temp file, then renamed) and return its path."""
    path = Path(folder) / FILENAME
    tmp = path.with_name(f".{FILENAME}.tmp")
    tmp.write_text(json.dumps(build_provenance(**record), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_provenance(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The provenance record of a trained model folder."""
    return json.loads((Path(folder) / FILENAME).read_text(encoding="utf-8"))
