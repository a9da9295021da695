"""Dataset cards rendered for real staged folders: Hub metadata, funnel, plots, and loading through the card."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from datakit.hub import plots
from datakit.hub.card import (
    CardError,
    card_metadata,
    cards_dir,
    features_yaml,
    iso_codes,
    render_card,
    scrub,
    size_category,
)
from datakit.hub.registry import MANIFEST

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
CHAT = pa.list_(MESSAGE)


def _chat(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"question {i}?"},
            {"role": "assistant", "content": "answer " + "x" * (i % 50)}]


def stage(folder: Path, kind: str | None, splits: dict[str, list[pa.Table]], **manifest: Any) -> dict[str, Any]:
    """Write a staged dataset folder: `data/<split>-0000i-of-0000n.parquet` per table, and `datakit.json`."""
    files, split_info = [], {}
    schema = next(iter(splits.values()))[0].schema
    digest = hashlib.sha256()
    for name, tables in splits.items():
        paths = []
        for i, table in enumerate(tables):
            path = f"data/{name}-{i:05d}-of-{len(tables):05d}.parquet"
            (folder / "data").mkdir(parents=True, exist_ok=True)
            pq.write_table(table, folder / path)
            data = (folder / path).read_bytes()
            digest.update(data)
            files.append({"path": path, "rows": table.num_rows, "bytes": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()})
            paths.append(path)
        split_info[name] = {"rows": sum(t.num_rows for t in tables), "files": paths}
    document = {
        "format": "datakit-dataset/1", "repo": "acme/cards", "version": "1.2.0", "schema": kind,
        "features": datasets.Features.from_arrow_schema(schema).to_dict(),
        "splits": split_info, "rows": sum(s["rows"] for s in split_info.values()), "files": files,
        "fingerprint": "sha256:" + digest.hexdigest(),
        "source": {"kind": "run", "name": "curate", "recipe": "name: curate\nseed: 7\n", "seed": 7},
        "models": [], "packages": {"datakit": "0.1.0", "pyarrow": pa.__version__, "datasets": datasets.__version__},
        "funnel": [], "created": "2026-11-26T22:00:00Z",
        **manifest,
    }
    (folder / MANIFEST).write_text(json.dumps(document, indent=1))
    return document


SFT_FUNNEL = [
    {"step": "load", "uses": "read", "in": 1500, "out": 1500, "dropped": {}, "failed": 0},
    {"step": "short", "uses": "filter", "in": 1500, "out": 1400, "dropped": {"too_long": 100}, "failed": 0},
    {"step": "unique", "uses": "dedup", "in": 1400, "out": 1300,
     "dropped": {"duplicate": 60, "near_duplicate": 30, "empty": 6, "bad_role": 4}, "failed": 0},
    {"step": "save", "uses": "write", "in": 1300, "out": 1300, "dropped": {}, "failed": 0},
]


@pytest.fixture
def sft_folder(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """1,300 sft rows (1,200 train in two files, 100 test) with a `language` column, 2/3 English."""
    def table(start: int, stop: int) -> pa.Table:
        ids = range(start, stop)
        return pa.table({"id": pa.array([f"r{i}" for i in ids]), "messages": pa.array([_chat(i) for i in ids], CHAT),
                         "language": pa.array(["en-US" if i % 3 else "fr" for i in ids])})

    folder = tmp_path / "sft"
    manifest = stage(folder, "sft", {"train": [table(0, 600), table(600, 1200)], "test": [table(1200, 1300)]},
                     funnel=SFT_FUNNEL)
    return folder, manifest


@pytest.fixture
def preference_folder(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """40 conversational preference rows with three float scores and an integer rating, made by a generation
    step with a model in a local folder; the recipe carries a machine path and a token."""
    n = 40
    table = pa.table({
        "prompt": pa.array([[{"role": "user", "content": f"q{i}"}] for i in range(n)], CHAT),
        "chosen": pa.array([[{"role": "assistant", "content": "good " * (i + 1)}] for i in range(n)], CHAT),
        "rejected": pa.array([[{"role": "assistant", "content": "bad"}] for i in range(n)], CHAT),
        "score_chosen": pa.array([0.5 + i / 10 for i in range(n)]),
        "score_rejected": pa.array([i / 20 if i % 5 else None for i in range(n)], pa.float64()),
        "margin": pa.array([0.5 + i / 20 for i in range(n)]),
        "rating": pa.array([1 + i % 5 for i in range(n)], pa.int64()),
    })
    folder = tmp_path / "pref"
    funnel = [
        {"step": "prompts", "uses": "read", "in": 50, "out": 50, "dropped": {}, "failed": 0},
        {"step": "respond", "uses": "sample_responses", "in": 50, "out": 45, "dropped": {}, "failed": 5},
        {"step": "pairs", "uses": "pair", "in": 45, "out": 40, "dropped": {"tie": 5}, "failed": 0},
    ]
    recipe = "name: prefs\noutput: /srv/private/runs/prefs\nhf_token: hf_" + "a" * 34 + "\nmax_tokens: 64\n"
    manifest = stage(folder, "preference", {"train": [table]}, funnel=funnel,
                     source={"kind": "run", "name": "prefs", "recipe": recipe, "seed": 3},
                     models=[{"name": "policy", "path": "/srv/private/models/tiny-policy", "revision": None},
                             {"name": "judge", "path": "acme/judge-1b", "revision": "0123abcd"}])
    return folder, manifest


def front_matter(readme: Path) -> tuple[dict[str, Any], str]:
    """The card's YAML header as data, and the Markdown body after it."""
    text = readme.read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?\n)---\n(.*)$", text, re.DOTALL)
    assert match, "the card must start with a YAML front matter block"
    return yaml.safe_load(match.group(1)), match.group(2)


def table_rows(body: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header row starts with `header`."""
    lines = body.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_sft_card_front_matter(sft_folder):
    folder, manifest = sft_folder
    readme = render_card(manifest, folder)
    assert readme == folder / "README.md"
    meta, _ = front_matter(readme)
    assert meta["license"] == "other"
    assert meta["task_categories"] == ["text-generation"]
    assert meta["language"] == ["en", "fr"]  # 867 en-US rows before 433 fr rows
    assert meta["size_categories"] == ["1K<n<10K"]
    assert meta["tags"] == ["datakit", "sft"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data/train-*.parquet"}, {"split": "test", "path": "data/test-*.parquet"}]}]
    info = meta["dataset_info"]
    assert [(s["name"], s["num_examples"]) for s in info["splits"]] == [("train", 1200), ("test", 100)]
    assert all(s["num_bytes"] > 0 for s in info["splits"])
    assert info["download_size"] == sum(f["bytes"] for f in manifest["files"])
    assert info["features"] == features_yaml(manifest["features"])
    # Without the Parquet footers at hand, the split sizes fall back to the file sizes.
    plain = card_metadata(manifest, languages=["en", "fr"])
    assert {k: v for k, v in plain.items() if k != "dataset_info"} == {k: v for k, v in meta.items()
                                                                         if k != "dataset_info"}
    assert [s["num_bytes"] for s in plain["dataset_info"]["splits"]] == [
        manifest["files"][0]["bytes"] + manifest["files"][1]["bytes"], manifest["files"][2]["bytes"]]


def test_sft_card_body_lists_every_step_and_embeds_plots(sft_folder):
    folder, manifest = sft_folder
    _, body = front_matter(render_card(manifest, folder))
    funnel = table_rows(body, "| Step |")
    assert [row[:6] for row in funnel] == [
        ["load", "`read`", "1500", "1500", "0", "0"],
        ["short", "`filter`", "1500", "1400", "100", "0"],
        ["unique", "`dedup`", "1400", "1300", "100", "0"],
        ["save", "`write`", "1300", "1300", "0", "0"],
    ]
    assert funnel[1][6] == "too_long (100)"
    assert funnel[2][6] == "duplicate (60), near_duplicate (30), empty (6)"  # the top three reasons
    assert table_rows(body, "| Column |") == [["`id`", "`string`"], ["`messages`", "`list<struct{role, content}>`"],
                                              ["`language`", "`string`"]]
    assert "![Text lengths](plots/lengths.png)" in body
    assert "![Rows after each step](plots/funnel.png)" in body
    assert "plots/scores.png" not in body and not (folder / "plots" / "scores.png").exists()  # no score column
    assert 'datasets.load_dataset("acme/cards", revision="v1.2.0")' in body
    assert "datakit pull acme/cards@1.2.0" in body
    assert manifest["fingerprint"] in body
    assert "recipe `curate` run with seed 7" in body
    assert table_rows(body, "| Package |")[0] == ["datakit", "0.1.0"]


def test_preference_card_metadata_tags_and_secrets(preference_folder):
    folder, manifest = preference_folder
    readme = render_card(manifest, folder, license="apache-2.0")
    meta, body = front_matter(readme)
    assert meta["license"] == "apache-2.0"
    assert meta["size_categories"] == ["n<1K"]
    assert meta["tags"] == ["datakit", "preference", "dpo", "reward-modeling", "synthetic"]
    assert "language" not in meta  # no language column and no manifest field
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*.parquet"}]
    assert table_rows(body, "| Model |") == [["`tiny-policy` (a local folder)", "policy", "not pinned"],
                                             ["`acme/judge-1b`", "judge", "`0123abcd`"]]
    text = readme.read_text()
    assert "/srv" not in text and "private" not in text and "hf_aaaa" not in text
    assert "output: <local>/prefs" in text and "hf_token: <redacted>" in text and "max_tokens: 64" in text
    assert "Histogram of each score column: `score_chosen`, `score_rejected`, `margin`, `rating`." in body


def test_plots_are_valid_sized_and_deterministic(preference_folder):
    folder, manifest = preference_folder
    first = render_card(manifest, folder).read_bytes()
    written = {p.name: p.read_bytes() for p in sorted((folder / "plots").glob("*.png"))}
    assert sorted(written) == ["funnel.png", "lengths.png", "scores.png"]
    expected = {"lengths.png": plots.lengths_size(), "scores.png": plots.scores_size(4),
                "funnel.png": plots.funnel_size(3)}
    assert expected == {"lengths.png": (640, 360), "scores.png": (640, 960), "funnel.png": (640, 140)}
    for name, data in written.items():
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) < 20_000, f"{name} is {len(data)} bytes"
        with Image.open(folder / "plots" / name) as image:
            image.verify()
        with Image.open(folder / "plots" / name) as image:
            assert image.format == "PNG" and image.size == expected[name]
    for path in (folder / "plots").glob("*.png"):
        path.unlink()
    assert render_card(manifest, folder).read_bytes() == first
    assert {p.name: p.read_bytes() for p in sorted((folder / "plots").glob("*.png"))} == written


@pytest.mark.parametrize("name", ["sft_folder", "preference_folder"])
def test_datasets_loads_the_folder_through_the_card(name, request, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder, manifest = request.getfixturevalue(name)
    render_card(manifest, folder)
    (folder / "unrelated.parquet").write_bytes((folder / manifest["files"][0]["path"]).read_bytes())
    declared = datasets.Features.from_dict(manifest["features"])
    builder = datasets.load_dataset_builder(str(folder), cache_dir=str(tmp_path / "cache"))
    assert builder.info.features == declared  # read from the card's dataset_info
    loaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    assert list(loaded) == list(manifest["splits"])  # only the card's configs, not the stray file
    for split, info in manifest["splits"].items():
        assert loaded[split].num_rows == info["rows"]
        assert loaded[split].features == declared
    first = pq.read_table(folder / manifest["files"][0]["path"]).slice(0, 1).to_pylist()[0]
    assert loaded[next(iter(manifest["splits"]))][0] == first


def test_features_yaml_matches_what_datasets_reads_back():
    features = datasets.Features({
        "id": datasets.Value("string"),
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string"),
                                   "tool_calls": datasets.List({"type": datasets.Value("string"),
                                                                "function": {"name": datasets.Value("string")}})}),
        "completions": datasets.List(datasets.Value("string")),
        "scores": datasets.LargeList(datasets.Value("float32")),
        "label": datasets.ClassLabel(names=["bad", "good"]),
        "meta": {"step": datasets.Value("string"), "seed": datasets.Value("int64")},
    })
    written = features_yaml(features.to_dict())
    assert written[1] == {"name": "messages", "list": [
        {"name": "role", "dtype": "string"}, {"name": "content", "dtype": "string"},
        {"name": "tool_calls", "list": [{"name": "type", "dtype": "string"},
                                        {"name": "function", "struct": [{"name": "name", "dtype": "string"}]}]}]}
    assert written[2] == {"name": "completions", "list": "string"}
    assert written[3] == {"name": "scores", "large_list": "float32"}
    assert written[4] == {"name": "label", "dtype": {"class_label": {"names": {"0": "bad", "1": "good"}}}}
    assert written == features._to_yaml_list()  # the form `datasets` itself writes into cards
    text = yaml.safe_dump({"features": written})
    assert datasets.Features._from_yaml_list(yaml.safe_load(text)["features"]) == features


@pytest.mark.parametrize(("rows", "label"), [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (99_999, "10K<n<100K"),
                                             (2_500_000, "1M<n<10M"), (10**13, "n>1T")])
def test_size_category(rows, label):
    assert size_category(rows) == label


def test_scrub_removes_paths_and_tokens_but_keeps_the_rest():
    text = ("path: /home/me/data/in.jsonl\nurl: http://localhost:8000/v1\nwhere: score / 2 > 1\n"
            "model: 'C:\\models\\tiny'\napi_key: sk-" + "b" * 24 + "\nmax_new_tokens: 5\nnote: a/b\n")
    assert scrub(text) == ("path: <local>/in.jsonl\nurl: http://localhost:8000/v1\nwhere: score / 2 > 1\n"
                           "model: '<local>/tiny'\napi_key: <redacted>\nmax_new_tokens: 5\nnote: a/b\n")


def test_language_codes_and_manifest_field():
    assert iso_codes({"en": 2, "de-DE": 5, "english": 9, "pt_BR": 1}) == ["de", "en", "pt"]
    assert iso_codes(["FR", "en"]) == ["fr", "en"]
    manifest = {"schema": None, "rows": 5, "language": "en", "splits": {"train": {"rows": 5, "files": []}}}
    meta = card_metadata(manifest, languages=["fr"])
    assert meta["language"] == ["en"] and meta["tags"] == ["datakit"] and "task_categories" not in meta


def test_render_refuses_a_folder_without_manifest_or_files(tmp_path, sft_folder):
    with pytest.raises(CardError, match="no datakit.json"):
        render_card({"splits": {"train": {"rows": 0, "files": []}}}, tmp_path)
    folder, manifest = sft_folder
    (folder / manifest["files"][0]["path"]).unlink()
    with pytest.raises(CardError, match="data/train-00000-of-00002.parquet"):
        render_card(manifest, folder)


def test_templates_ship_with_the_package():
    assert (cards_dir() / "dataset_card.md.jinja").is_file()
