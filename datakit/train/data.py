"""Find a training dataset (file, folder, run or published version), check its record kind, and shape it for TRL.

A trainer needs one of a few record kinds (see `TRAINER_KINDS`). The rows' kind is what their manifest declares,
else what their columns say (`datakit.records.detect_style`); rows of another kind are refused with a hint saying
how to turn them into the kind the trainer needs. `preference` rows given to KTO are unpaired here: each pair
becomes a desirable row (the chosen reply, label true) and an undesirable one (the rejected reply, label false),
the conversion TRL's `unpair_preference_dataset` makes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from datakit.errors import DataError, DatakitError, InputError, UsageError

if TYPE_CHECKING:
    import datasets

# Record kinds each trainer takes, preferred first (TRL 1.16's dataset formats for each trainer).
TRAINER_KINDS: dict[str, tuple[str, ...]] = {
    "sft": ("sft", "prompt_completion"),
    "dpo": ("preference", "implicit_preference"),
    "kto": ("unpaired_preference", "preference"),
    "reward": ("preference", "implicit_preference"),
}

# Optional columns TRL reads beyond a kind's required ones; everything else (ids, provenance, scores) stays behind.
TRAINER_EXTRAS: dict[str, tuple[str, ...]] = {
    "sft": ("tools",),
    "dpo": ("tools",),
    "kto": ("tools",),
    "reward": ("tools", "margin"),
}

UNPAIR_NOTE = ("each `preference` pair becomes two `unpaired_preference` rows for KTO: the chosen reply with "
               "label true and the rejected reply with label false")

_MAKE_PAIRS = ("sample several responses per prompt (`sample_responses`), score them (`reward` with mode: ranked) "
               "and `pair` them into `preference` rows, as pipelines/magpie_dpo.yaml does")
_NO_RESPONSES = "these rows hold prompts only: generate responses first (e.g. `magpie_responses` or `sample_responses`)"

# How to get from the kind the rows are to the kind a trainer needs: (found kind, trainer) -> hint.
_HINTS: dict[tuple[str, str], str] = {
    ("ranked", "sft"): "`ranked` rows hold several scored completions per prompt: run the `pair` step to make "
                       "`preference` rows and train them with `datakit train dpo`",
    ("ranked", "dpo"): "run the `pair` step on them (uses: pair) to make `preference` rows",
    ("ranked", "reward"): "run the `pair` step on them (uses: pair) to make `preference` rows",
    ("ranked", "kto"): "run the `pair` step on them (uses: pair) to make `preference` rows; KTO unpairs those itself",
    ("preference", "sft"): "preference pairs train with `datakit train dpo`, `kto` or `reward`; to fine-tune on the "
                           "chosen replies, make `sft` rows whose `messages` are the prompt followed by the chosen reply",
    ("implicit_preference", "sft"): "preference pairs train with `datakit train dpo` or `reward`",
    ("implicit_preference", "kto"): "KTO needs an explicit prompt: split the shared start of chosen and rejected off "
                                    "into a `prompt` column (TRL's `extract_prompt`), or train with `datakit train dpo`",
    ("unpaired_preference", "sft"): "rows with a desirable/undesirable label train with `datakit train kto`",
    ("unpaired_preference", "dpo"): "unpaired rows train with `datakit train kto`; for DPO, " + _MAKE_PAIRS,
    ("unpaired_preference", "reward"): "unpaired rows train with `datakit train kto`; for a reward model, "
                                       + _MAKE_PAIRS,
    ("multimodal_preference", "dpo"): "image preference rows need a vision-language trainer, which "
                                      "`datakit train` does not run",
}
for _trainer in ("dpo", "kto", "reward"):
    _HINTS[("sft", _trainer)] = "`sft` rows have one reply per prompt; " + _MAKE_PAIRS
    _HINTS[("prompt_completion", _trainer)] = "`prompt_completion` rows have one reply per prompt; " + _MAKE_PAIRS
for _trainer in TRAINER_KINDS:
    _HINTS[("instruction", _trainer)] = _NO_RESPONSES
    _HINTS[("prompt_only", _trainer)] = _NO_RESPONSES
    _HINTS[("stepwise_supervision", _trainer)] = ("stepwise supervision trains process reward models, which TRL "
                                                  "1.16 has no trainer for")


@dataclass
class DatasetSource:
    """Where the rows come from: the reference as given, their files, and the manifest when they have one."""

    ref: str
    kind: str  # "version" (pulled from a registry), "run", "folder" or "file"
    name: str
    files: list[Path]
    path: Path
    manifest: dict[str, Any] | None = None
    registry: str | None = None


@dataclass
class TrainingData:
    """Rows checked for one trainer, with what provenance needs to know about them."""

    source: DatasetSource
    table: pa.Table  # the rows as the trainer gets them (after any conversion), only the columns it reads
    record_kind: str  # the kind of the rows as given, e.g. "preference"
    style: str  # conversational or standard
    source_rows: int
    fingerprint: str
    converted: str | None = None
    held_out: int = 0  # rows kept out of training for diagnostics
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows the trainer gets: after any conversion, less the held-out ones."""
        return self.table.num_rows - self.held_out

    @property
    def conversational(self) -> bool:
        return self.style == "conversational"


def _is_version_ref(ref: str) -> bool:
    return "@" in ref and not Path(ref).exists()


def _run_sink(path: Path, trainer: str | None, sink: str | None) -> str | None:
    """The sink of a run directory to train on: `sink`, the only one, or the only one whose declared record kind
    `trainer` takes (so a Magpie-DPO run, with `ranked` and `preference` sinks, trains DPO on the pairs)."""
    import json

    if sink is not None or trainer is None or not (path / "run.json").is_file():
        return sink
    try:
        steps = (json.loads((path / "run.json").read_text(encoding="utf-8")).get("document") or {}).get("steps")
    except (OSError, ValueError):
        return None
    declared = {s.get("id"): (s.get("with") or {}).get("schema") for s in steps or [] if s.get("uses") == "write"}
    fitting = [step for step, kind in declared.items() if kind in TRAINER_KINDS.get(trainer, ())]
    return fitting[0] if len(declared) > 1 and len(fitting) == 1 else None


def resolve_dataset(ref: str | os.PathLike[str], *, registry: str | os.PathLike[str] | None = None,
                    split: str = "train", pull_to: str | os.PathLike[str] | None = None, trainer: str | None = None,
                    sink: str | None = None) -> DatasetSource:
    """Find the data files `ref` names: a published version (`org/name@X.Y.Z`, pulled and verified through
    `registry`), a run directory (its sink's output), or a local Parquet/JSON Lines file or folder.

    A folder holding a `datakit.json` manifest is verified against it and read by the manifest's `split`;
    other folders have one split, `train`, made of all their files. Of a run with several sinks, `sink` names the
    one to read; left out, it is the only sink declaring a record kind `trainer` takes.
    """
    from datakit.hub.manifest import resolve_source
    from datakit.hub.registry import MANIFEST

    text = os.fspath(ref)
    if _is_version_ref(text):
        from datakit.hub.pull import pull
        from datakit.hub.refs import parse_ref

        parsed = parse_ref(text)
        folder = pull(text, to=pull_to, registry=registry)
        source = _from_manifest(text, "version", folder, split)
        source.name = parsed.repo.split("/")[-1]
        source.registry = "hub" if registry == "hub" else (os.fspath(registry) if registry is not None else None)
        return source
    path = Path(text)
    if path.is_dir() and (path / MANIFEST).is_file():
        from datakit.hub.pull import verify

        verify(path)
        return _from_manifest(text, "folder", path, split)
    try:
        found = resolve_source(path, _run_sink(path, trainer, sink))
    except UsageError as exc:
        raise UsageError(str(exc).replace("--output", "--sink")) from None
    if split != "train":
        raise UsageError(f"'{text}' has no split '{split}': only published datasets (with a {MANIFEST} manifest) "
                         "have named splits; leave --split out to train on all its rows")
    kind = found.kind if found.kind == "run" else ("file" if path.is_file() else "folder")
    return DatasetSource(text, kind, found.name, found.files, path)


def _from_manifest(ref: str, kind: str, folder: Path, split: str) -> DatasetSource:
    from datakit.hub.pull import read_manifest

    manifest = read_manifest(folder)
    splits = manifest.get("splits") or {}
    if split not in splits:
        raise UsageError(f"'{ref}' has no split '{split}'; its splits: {', '.join(splits) or '(none)'}")
    files = [folder / name for name in splits[split]["files"]]
    name = str(manifest.get("repo") or folder.name).split("/")[-1]
    return DatasetSource(ref, kind, name, files, folder, manifest=manifest)


def read_table(source: DatasetSource) -> pa.Table:
    """All the rows of `source` as one table (columns unified across files)."""
    from datakit.hub.manifest import read_rows

    if not source.files:
        raise InputError("no data files (Parquet or JSON Lines) found", path=str(source.path))
    schema, batches = read_rows(source.files)
    return pa.Table.from_batches(list(batches), schema=schema)


def _declared_kind(source: DatasetSource) -> str | None:
    if source.manifest and source.manifest.get("schema"):
        return str(source.manifest["schema"])
    return None


def _fits(kind: str, arrow_schema: pa.Schema) -> bool:
    from datakit.records import get_schema
    from datakit.records.detect import pick_style, structural_problems

    schema = get_schema(kind)
    style = pick_style(schema, arrow_schema)
    return all(c in arrow_schema.names for c in style.required) and not structural_problems(schema, style,
                                                                                            arrow_schema)


def choose_kind(trainer: str, arrow_schema: pa.Schema, declared: str | None = None) -> str:
    """The record kind to train `trainer` on: the declared or detected kind when the trainer takes it.

    Rows of another kind raise a UsageError naming what they are, what the trainer needs and how to convert.
    When no kind can be told from the columns, the first kind the trainer takes whose columns fit is used.
    """
    from datakit.records import detect_style

    wanted = TRAINER_KINDS[trainer]
    found = declared
    why = ""
    if found is None:
        try:
            found = detect_style(arrow_schema).schema.name
        except DatakitError as exc:
            why = str(exc)
    if found in wanted:
        return found
    if found is None:
        for kind in wanted:
            if _fits(kind, arrow_schema):
                return kind
    needs = " or ".join(f"`{k}`" for k in wanted)
    what = f"these rows are `{found}`" if found else f"these rows are of no kind `{trainer}` takes ({why})"
    hint = _HINTS.get((found or "", trainer))
    message = f"{what}, and `datakit train {trainer}` needs {needs} rows"
    if hint:
        message += f": {hint}"
    elif not found:
        columns = ", ".join(arrow_schema.names)
        message += f" (the columns are {columns}; see 'datakit schemas' for each kind's columns)"
    raise UsageError(message)


def unpair(table: pa.Table) -> pa.Table:
    """`preference` rows as `unpaired_preference` rows: every chosen reply labelled true, then every rejected one
    labelled false (two rows per pair, prompts repeated; `tools` kept when present)."""
    keep = [c for c in ("tools",) if c in table.column_names]
    n = table.num_rows

    def side(column: str, label: bool) -> pa.Table:
        columns = {"prompt": table.column("prompt"), "completion": table.column(column),
                   "label": pa.array([label] * n, pa.bool_())}
        columns.update({c: table.column(c) for c in keep})
        return pa.table(columns)

    return pa.concat_tables([side("chosen", True), side("rejected", False)])


def _style(kind: str, arrow_schema: pa.Schema) -> str:
    from datakit.records import get_schema
    from datakit.records.detect import pick_style

    return pick_style(get_schema(kind), arrow_schema).name


def _check_rows(table: pa.Table, kind: str, where: str) -> None:
    from datakit.records import validate_table

    report = validate_table(table, kind, max_errors=5, path=where)
    if report.failure is not None:
        raise report.failure
    if report.error_count:
        shown = "; ".join(str(issue) for issue in report.issues)
        raise DataError(f"{report.rows_with_errors:,} of {report.rows:,} rows are not valid `{kind}` rows "
                        f"({report.error_count:,} errors; 'datakit validate --schema {kind}' lists them): {shown}")


def prepare(trainer: str, source: DatasetSource) -> TrainingData:
    """Read `source`, check that its rows are a kind `trainer` takes and valid as that kind, and keep only the
    columns the trainer reads (unpairing `preference` rows for KTO)."""
    from datakit.hub.manifest import content_fingerprint

    if trainer not in TRAINER_KINDS:
        raise UsageError(f"unknown trainer '{trainer}'; choose one of {', '.join(TRAINER_KINDS)}")
    table = read_table(source)
    if table.num_rows == 0:
        raise InputError("the dataset has no rows", path=str(source.path))
    kind = choose_kind(trainer, table.schema, _declared_kind(source))
    _check_rows(table, kind, str(source.path))
    fingerprint = (source.manifest or {}).get("fingerprint") or content_fingerprint([table])
    style = _style(kind, table.schema)
    data = TrainingData(source, table, kind, style, table.num_rows, fingerprint)
    if trainer == "kto" and kind == "preference":
        table = unpair(table)
        data.converted = "preference -> unpaired_preference"
        data.notes.append(UNPAIR_NOTE)
        kind_for_columns = "unpaired_preference"
    else:
        kind_for_columns = kind
    data.table = _trainer_columns(trainer, kind_for_columns, table, data.notes)
    return data


def _trainer_columns(trainer: str, kind: str, table: pa.Table, notes: list[str]) -> pa.Table:
    from datakit.records import get_schema
    from datakit.records.detect import pick_style

    style = pick_style(get_schema(kind), table.schema)
    columns = [c for c in style.required] + [c for c in TRAINER_EXTRAS[trainer] if c in table.column_names]
    if "margin" in columns and table.column("margin").null_count:
        # TRL's reward collator needs a margin for every row of a batch, or none at all.
        columns.remove("margin")
        notes.append(f"the `margin` column has {table.column('margin').null_count:,} empty values, so the reward "
                     "model trains without margins")
    return table.select(columns)


def to_dataset(table: pa.Table) -> datasets.Dataset:
    """The rows as an in-memory `datasets.Dataset`, the form TRL trainers take."""
    import datasets

    return datasets.Dataset(table.combine_chunks())
