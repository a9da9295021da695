"""The dataset card: a `README.md` with Hub metadata, a summary, the funnel and plots, rendered from `cards/`."""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from datakit.errors import DatakitError
from datakit.hub import plots
from datakit.hub.registry import MANIFEST, REPO

TEMPLATE = "dataset_card.md.jinja"
DEFAULT_LICENSE = "other"  # the Hub's value for a license it has no identifier for

# The Hub's `size_categories` buckets, by row count: (exclusive upper bound, label).
SIZE_CATEGORIES = (
    (1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"), (1_000_000_000_000, "100B<n<1T"),
)
LARGEST_SIZE = "n>1T"

# Per record kind: the Hub task categories and the tags naming the training methods it is for (after TRL's
# trainers, see the `trainers` of each schema in `schemas/`). Kinds not listed get no task category.
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sft": (("text-generation",), ("sft",)),
    "prompt_completion": (("text-generation",), ("sft",)),
    "instruction": (("text-generation",), ("instructions",)),
    "prompt_only": (("text-generation",), ("grpo", "rloo")),
    "preference": (("text-generation",), ("dpo", "reward-modeling", "preference")),
    "implicit_preference": (("text-generation",), ("dpo", "reward-modeling", "preference")),
    "unpaired_preference": (("text-generation",), ("kto", "preference")),
    "ranked": (("text-generation",), ("ranking", "preference")),
    "stepwise_supervision": (("text-generation",), ("prm", "process-supervision")),
    "multimodal_preference": (("image-text-to-text",), ("dpo", "preference", "multimodal")),
}

# Which column's text the length histogram shows: the first of these present that holds text or chat messages.
# For chats only the turns of the given role count (the responses, or the prompts of prompt-only sets).
TEXT_FIELDS = (("messages", "assistant"), ("chosen", "assistant"), ("completion", "assistant"), ("text", None),
               ("instruction", None), ("prompt", "user"))
# Numeric columns plotted in `plots/scores.png`: these names, and any name ending in one of SCORE_SUFFIXES.
SCORE_NAMES = ("score", "rating", "reward", "csr", "instruct_reward", "score_chosen", "score_rejected", "margin")
SCORE_SUFFIXES = ("_score", "_rating", "_reward")
LANGUAGE_COLUMN = "language"
ISO_LANGUAGE = re.compile(r"^([a-z]{2,3})(?:[-_][A-Za-z0-9]+)*$")  # ISO 639-1/-3, optionally with a region

# Tokens and machine paths never reach a card.
SECRET = re.compile(r"\b(?:hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,})")
SECRET_SETTING = re.compile(r"(?i)\b((?:[\w-]*_)?(?:token|api[_-]?key|secret|password)\s*[:=]\s*)([^\s,}]+)")
LOCAL_PATH = re.compile(r"(?<![\w.:/~-])(?:~?/|[A-Za-z]:\\)[^\s'\"]+")


class CardError(DatakitError):
    """The card cannot be rendered: the staged folder or its manifest is incomplete."""

    exit_code = 1


def cards_dir() -> Path:
    """Where the card templates live: inside the installed wheel, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_cards"
    return packaged if packaged.is_dir() else here.parent / "cards"


def size_category(rows: int) -> str:
    """The Hub's size bucket for a dataset of `rows` rows, e.g. `1K<n<10K`."""
    for bound, label in SIZE_CATEGORIES:
        if rows < bound:
            return label
    return LARGEST_SIZE


def card_metadata(manifest: Mapping[str, Any], *, license: str | None = None,
                  languages: list[str] | None = None, num_bytes: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The card's YAML front matter as data, in the keys the Hub reads.

    `license` overrides the manifest's `license` (default `other`); `languages` (ISO codes) are used when the
    manifest has no `language` field, and the key is left out when neither gives any. `num_bytes` gives the
    in-memory size of each split for `dataset_info` (the manifest's file sizes when not given).
    """
    kind = manifest.get("schema")
    categories, kind_tags = KINDS.get(kind, ((), ())) if kind else ((), ())
    meta: dict[str, Any] = {"license": license or manifest.get("license") or DEFAULT_LICENSE}
    if categories:
        meta["task_categories"] = list(categories)
    declared = manifest.get("language")
    language = iso_codes([declared] if isinstance(declared, str) else declared or []) or list(languages or [])
    if language:
        meta["language"] = language
    meta["size_categories"] = [size_category(int(manifest.get("rows") or 0))]
    tags = ["datakit", *([kind] if kind else []), *kind_tags]
    if any(synthetic_step(str(step.get("uses", ""))) for step in manifest.get("funnel") or []):
        tags.append("synthetic")
    meta["tags"] = list(dict.fromkeys(tag.replace("_", "-") for tag in tags))
    splits = _splits(manifest)
    every_file = [f for split in splits.values() for f in split["files"]]
    meta["configs"] = [{"config_name": "default",
                        "data_files": [{"split": name, "path": _split_pattern(name, split["files"], every_file)}
                                       for name, split in splits.items()]}]
    sizes = {f["path"]: int(f.get("bytes") or 0) for f in manifest.get("files") or []}
    split_bytes = {name: int((num_bytes or {}).get(name, sum(sizes.get(p, 0) for p in split["files"])))
                   for name, split in splits.items()}
    info: dict[str, Any] = {}
    if manifest.get("features"):
        info["features"] = features_yaml(manifest["features"])
    info["splits"] = [{"name": name, "num_bytes": split_bytes[name], "num_examples": int(split["rows"])}
                      for name, split in splits.items()]
    info["download_size"] = sum(sizes.values())
    info["dataset_size"] = sum(split_bytes.values())
    meta["dataset_info"] = info
    return meta


def features_yaml(features: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A `datasets.Features.to_dict()` mapping in the list form dataset cards use under `dataset_info.features`:
    one `{name, dtype}` entry per column, `list:` for lists (holding a dtype, or the fields of a struct), and
    `struct:` for nested records, which is what `datasets` reads back into the same features."""
    return [{"name": name, **_feature_yaml(feature)} for name, feature in features.items()]


def _feature_yaml(feature: Any) -> dict[str, Any]:
    if isinstance(feature, list):  # the older `[feature]` spelling of a list
        return _list_yaml("list", feature[0], {})
    if not isinstance(feature, Mapping):
        raise CardError(f"a feature must be a mapping, not {type(feature).__name__}: {feature!r}")
    rest = {k: v for k, v in feature.items() if k != "_type"}
    kind = feature.get("_type")
    if kind is None:
        return {"struct": features_yaml(rest)}
    if kind == "Value":
        return dict(rest)
    if kind in ("List", "LargeList", "Sequence"):
        return _list_yaml("large_list" if kind == "LargeList" else "list", rest.pop("feature"), rest)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()  # ClassLabel -> class_label
    if not rest:
        return {"dtype": snake}
    if snake == "class_label" and isinstance(rest.get("names"), list):
        rest["names"] = {str(i): name for i, name in enumerate(rest["names"])}  # the Hub wants string keys
    return {"dtype": {snake: rest}}


def _list_yaml(key: str, inner: Any, rest: dict[str, Any]) -> dict[str, Any]:
    """A list feature: its element written directly under `key` when it is a plain dtype or a struct."""
    element = _feature_yaml(inner)
    if list(element) == ["dtype"] or list(element) == ["struct"]:
        element = next(iter(element.values()))
    return {key: element, **rest}


def synthetic_step(uses: str) -> bool:
    """Whether a step generates rows with a model (any step from `datakit.generate`), which makes the dataset
    synthetic."""
    from datakit.pipeline import registry

    if ":" in uses:  # a class named by its module: not imported just to render a card
        return False
    try:
        return registry.lookup(uses).__module__.startswith("datakit.generate.")
    except LookupError:  # a plugin step that is not installed here: nothing says it generated anything
        return False


def render_card(manifest: Mapping[str, Any], folder: Path, *, license: str | None = None) -> Path:
    """Write `folder/README.md` and its plots (`folder/plots/*.png`) for a staged dataset folder that holds the
    manifest (`datakit.json`) and the Parquet files it lists; return the README's path.

    The text length, score and language statistics are computed from the Parquet files; everything else comes
    from the manifest. Rendering twice gives identical files.
    """
    import jinja2

    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise CardError(f"{folder.name}: no {MANIFEST} in the staged folder; write the manifest before the card")
    files = [folder / f["path"] for f in manifest.get("files") or []]
    missing = [f["path"] for f, path in zip(manifest.get("files") or [], files) if not path.is_file()]
    if missing:
        raise CardError(f"the manifest lists data files the staged folder lacks: {', '.join(missing[:5])}")
    stats = _DataStats.collect(files)
    meta = card_metadata(manifest, license=license, languages=stats.languages(),
                         num_bytes=_split_num_bytes(manifest, folder))
    figures = _write_plots(manifest, stats, folder)

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(cards_dir()), autoescape=False,
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                     trim_blocks=True, lstrip_blocks=True)
    environment.filters["cell"] = table_cell
    text = environment.get_template(TEMPLATE).render(**_context(manifest, meta, stats, figures))
    readme = folder / "README.md"
    readme.write_text(text, encoding="utf-8")
    return readme


class _DataStats:
    """What the card shows about the rows themselves: text lengths, score values and languages."""

    def __init__(self) -> None:
        self.text_field: str | None = None
        self.lengths: list[np.ndarray] = []
        self.scores: dict[str, list[np.ndarray]] = {}
        self.language_counts: Counter[str] = Counter()

    @classmethod
    def collect(cls, files: list[Path]) -> _DataStats:
        stats = cls()
        if not files:
            return stats
        schema = pq.read_schema(files[0])
        stats.text_field, role = _text_field(schema)
        score_columns = [f.name for f in schema if _is_score(f)]
        stats.scores = {name: [] for name in score_columns}
        language = LANGUAGE_COLUMN if _is_string(schema, LANGUAGE_COLUMN) else None
        columns = [c for c in (stats.text_field, *score_columns, language) if c]
        for batch in _batches(files, columns):
            stats.add(batch, role, language)
        return stats

    def add(self, batch: pa.RecordBatch, role: str | None, language: str | None) -> None:
        import polars as pl

        from datakit.curate.text import select_text

        if self.text_field:
            text = select_text(batch, self.text_field, role, "card")
            self.lengths.append(text.drop_nulls().str.len_chars().to_numpy().astype(np.int64))
        for name, parts in self.scores.items():
            values = pl.from_arrow(batch.column(name)).cast(pl.Float64).drop_nulls()
            parts.append(values.to_numpy())
        if language:
            counts = pl.from_arrow(batch.column(language)).drop_nulls().value_counts()
            self.language_counts.update(dict(zip(*(counts.get_column(c).to_list() for c in counts.columns))))

    def length_values(self) -> np.ndarray:
        return np.concatenate(self.lengths) if self.lengths else np.zeros(0, dtype=np.int64)

    def score_values(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in self.scores.items()}

    def languages(self) -> list[str]:
        """ISO codes of the `language` column's values, most frequent first."""
        return iso_codes(self.language_counts)


def iso_codes(values: Iterable[str] | Mapping[str, int]) -> list[str]:
    """The ISO 639 codes among `values` (`en`, `en-US` and `en_GB` all give `en`; other values are ignored),
    most frequent first when `values` maps each value to its count, else in first-seen order."""
    counts = values if isinstance(values, Mapping) else Counter(dict.fromkeys(values, 0))
    codes: Counter[str] = Counter()
    first: dict[str, int] = {}
    for value, count in counts.items():
        match = ISO_LANGUAGE.match(str(value).strip().lower())
        if match:
            codes[match.group(1)] += count
            first.setdefault(match.group(1), len(first))
    return sorted(codes, key=lambda code: (-codes[code], first[code]))


def _batches(files: list[Path], columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The chosen columns of every file, a bounded batch at a time (datasets can be larger than memory)."""
    for path in files:
        yield from pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=columns)


def _text_field(schema: pa.Schema) -> tuple[str | None, str | None]:
    """The first of TEXT_FIELDS in `schema` that holds text or chat messages, and the role to read."""
    from datakit.curate.text import select_text
    from datakit.errors import RecipeError

    for name, role in TEXT_FIELDS:
        index = schema.get_field_index(name)
        if index < 0:
            continue
        try:  # an empty batch is enough to learn whether the column's type holds text
            select_text(pa.RecordBatch.from_pylist([], schema=pa.schema([schema.field(index)])), name, role, "card")
        except RecipeError:
            continue
        return name, role
    return None, None


def _is_score(field: pa.Field) -> bool:
    numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
    return numeric and (field.name in SCORE_NAMES or field.name.endswith(SCORE_SUFFIXES))


def _is_string(schema: pa.Schema, name: str) -> bool:
    index = schema.get_field_index(name)
    return index >= 0 and (pa.types.is_string(schema.field(index).type)
                           or pa.types.is_large_string(schema.field(index).type))


def _write_plots(manifest: Mapping[str, Any], stats: _DataStats, folder: Path) -> list[dict[str, Any]]:
    """Draw the plots that have data and return, per plot, what the template needs to embed it."""
    figures: list[dict[str, Any]] = []

    def add(name: str, image: Any, title: str, text: str) -> None:
        path = plots.save_png(image, folder / "plots" / f"{name}.png")
        figures.append({"name": name, "path": f"plots/{path.name}", "title": title, "text": text,
                        "width": image.width, "height": image.height})

    lengths = stats.length_values()
    if stats.text_field and lengths.size:
        add("lengths", plots.length_histogram(lengths, f"Length of {stats.text_field}"), "Text lengths",
            f"Characters in `{stats.text_field}`{_role_note(stats.text_field)}, per row.")
    scores = {name: values for name, values in stats.score_values().items() if values.size}
    if scores:
        add("scores", plots.score_histograms(scores), "Scores",
            "Histogram of each score column: " + ", ".join(f"`{name}`" for name in scores) + ".")
    funnel = manifest.get("funnel") or []
    if funnel:
        add("funnel", plots.funnel_chart(funnel), "Rows after each step",
            "Rows left after each step of the recipe.")
    return figures


def _role_note(field: str) -> str:
    role = dict(TEXT_FIELDS).get(field)
    return f" (the {role} turns of chats)" if role else ""


def _context(manifest: Mapping[str, Any], meta: dict[str, Any], stats: _DataStats,
             figures: list[dict[str, Any]]) -> dict[str, Any]:
    """The variables the card template gets (listed in `cards/README.md`)."""
    repo = str(manifest.get("repo") or "")
    version = str(manifest.get("version") or "")
    source = dict(manifest.get("source") or {})
    recipe = source.get("recipe")
    packages = manifest.get("packages") or {}
    return {
        "meta": meta,
        "front_matter": yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000),
        "repo": repo,
        "name": repo.split("/")[-1],
        "version": version,
        "tag": f"v{version}",
        "schema": manifest.get("schema"),
        "rows": int(manifest.get("rows") or 0),
        "columns": [{"name": name, "type": type_name(feature)}
                    for name, feature in (manifest.get("features") or {}).items()],
        "splits": [{"name": s["name"], "rows": s["num_examples"], "bytes": s["num_bytes"]}
                   for s in meta["dataset_info"]["splits"]],
        "source": {"kind": source.get("kind"), "name": scrub(str(source.get("name") or "")) or None,
                   "seed": source.get("seed"), "recipe": scrub(recipe).rstrip() if recipe else None},
        "models": [{"name": scrub(str(m.get("name") or "")), **model_display(str(m.get("path") or "")),
                    "revision": m.get("revision")} for m in manifest.get("models") or []],
        "funnel": [_funnel_row(step) for step in manifest.get("funnel") or []],
        "plots": figures,
        "text_field": stats.text_field,
        "packages": [{"name": name, "version": packages[name]} for name in sorted(packages)],
        "fingerprint": manifest.get("fingerprint"),
        "created": manifest.get("created"),
    }


def _funnel_row(step: Mapping[str, Any]) -> dict[str, Any]:
    dropped = {str(k): int(v) for k, v in (step.get("dropped") or {}).items()}
    top = sorted(dropped.items(), key=lambda item: (-item[1], item[0]))[:3]
    return {"step": str(step.get("step", "")), "uses": str(step.get("uses", "")), "in": step.get("in"),
            "out": step.get("out"), "dropped": sum(dropped.values()), "failed": int(step.get("failed") or 0),
            "reasons": ", ".join(f"{reason} ({n:,})" for reason, n in top if n)}


def table_cell(value: Any) -> str:
    """`value` as text that stays inside one cell of a Markdown table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def type_name(feature: Any) -> str:
    """A short, readable type for a column of the card's table, e.g. `list<struct{role, content}>`."""
    if isinstance(feature, list):
        return f"list<{type_name(feature[0])}>"
    if not isinstance(feature, Mapping):
        return str(feature)
    kind = feature.get("_type")
    if kind is None:
        return "struct{" + ", ".join(feature) + "}"
    if kind == "Value":
        return str(feature.get("dtype"))
    if kind in ("List", "LargeList", "Sequence"):
        return f"list<{type_name(feature.get('feature'))}>"
    return str(kind)


def model_display(path: str) -> dict[str, Any]:
    """How the card names a model: a Hub id as is; a local folder only by its last component, marked local
    (`{"path": ..., "local": bool}`)."""
    if not path or REPO.fullmatch(path) or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", path):
        return {"path": scrub(path), "local": False}
    name = PureWindowsPath(path).name if "\\" in path else PurePosixPath(path).name
    return {"path": scrub(name), "local": True}


def scrub(text: str) -> str:
    """`text` without tokens or machine paths: tokens and secret settings become `<redacted>`, absolute and
    home paths keep only their last component behind `<local>/`."""
    text = SECRET.sub("<redacted>", text)
    text = SECRET_SETTING.sub(lambda m: m.group(1) + "<redacted>", text)

    def local(match: re.Match[str]) -> str:
        path = match.group(0)
        name = PureWindowsPath(path).name if "\\" in path else PurePosixPath(path).name
        return f"<local>/{name}" if name else "<local>"

    return LOCAL_PATH.sub(local, text)


def _splits(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    splits = manifest.get("splits") or {}
    if not splits:
        raise CardError("the manifest has no splits: a published dataset needs at least one (e.g. train)")
    return {str(name): {"rows": int(s.get("rows") or 0), "files": list(s.get("files") or [])}
            for name, s in splits.items()}


def _split_pattern(split: str, files: list[str], every_file: list[str]) -> str | list[str]:
    """`data/<split>-*.parquet` when that pattern matches exactly the split's files among all the dataset's
    files, else the split's files themselves."""
    pattern = f"data/{split}-*.parquet"
    matched = sorted(f for f in every_file if fnmatch.fnmatchcase(f, pattern) and "/" not in f[len("data/"):])
    return pattern if files and matched == sorted(files) else list(files)


def _split_num_bytes(manifest: Mapping[str, Any], folder: Path) -> dict[str, int]:
    """Each split's uncompressed size from the Parquet footers, the closest cheap measure of its size in memory."""
    sizes: dict[str, int] = {}
    for name, split in _splits(manifest).items():
        total = 0
        for path in split["files"]:
            metadata = pq.read_metadata(folder / path)
            total += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        sizes[name] = total
    return sizes
