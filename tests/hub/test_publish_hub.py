"""publish -> versions -> pull -> load_dataset through the real huggingface_hub client and a local Hub server,
with the fingerprint verified, overwrites refused, and the token nowhere in datakit's output or files."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import yaml

from datakit.hub.manifest import build_manifest
from datakit.testing import HubServer
from tests.hub.conftest import cli


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def test_publish_and_pull_at_a_tag_through_the_real_client(demo_run, tmp_path, capsys):
    import datasets

    said: list[str] = []
    with HubServer(root=tmp_path / "hub") as hub, hub.client_env():
        code, out, err = cli(capsys, "publish", demo_run, "--repo", "acme/demo", "--version", "1.0.0",
                             "--registry", "hub")
        said += [out, err]
        assert code == 0, err
        assert out.startswith("published acme/demo@1.0.0 (tag v1.0.0, 2 rows, revision ")
        assert "v1.0.0" in hub.tags("acme/demo")
        commits = hub.commits("acme/demo")
        assert hub.requests_to("lfs-batch"), "the Parquet shard went through the LFS path"

        code, out, err = cli(capsys, "publish", demo_run, "--repo", "acme/demo", "--version", "1.0.0",
                             "--registry", "hub")
        said += [out, err]
        assert code == 2 and "already published" in err
        assert hub.commits("acme/demo") == commits  # refused before anything was uploaded

        code, out, err = cli(capsys, "publish", demo_run, "--repo", "acme/demo", "--version", "1.0.0",
                             "--registry", "hub", "--skip-existing")
        said += [out, err]
        assert code == 0 and "nothing to do" in out and hub.commits("acme/demo") == commits

        code, out, err = cli(capsys, "versions", "acme/demo", "--registry", "hub", "--json")
        said += [out, err]
        assert [(v["version"], v["rows"]) for v in json.loads(out)] == [("1.0.0", 2)]

        pulled = tmp_path / "pulled"
        code, out, err = cli(capsys, "pull", "acme/demo@1.0.0", "--to", pulled, "--registry", "hub")
        said += [out, err]
        assert (code, out.strip()) == (0, str(pulled)), err
        manifest = json.loads((pulled / "datakit.json").read_text())
        assert manifest["fingerprint"] == build_manifest(demo_run, "acme/demo", "1.0.0")["fingerprint"]
        assert sorted(p.relative_to(pulled).as_posix() for p in pulled.rglob("*") if p.is_file()) == [
            "README.md", "data/train-00000-of-00001.parquet", "datakit.json", "plots/funnel.png", "plots/lengths.png"]

        card = (pulled / "README.md").read_text()
        meta = front_matter(card)
        assert meta["configs"][0]["data_files"][0]["split"] == "train" and meta["size_categories"] == ["n<1K"]
        assert hub.requests_to("validate-yaml"), "the card's YAML went through the server's check"

        # datasets resolves the card's configs at the tag and loads exactly the published rows.
        loaded = datasets.load_dataset("acme/demo", revision="v1.0.0", cache_dir=str(tmp_path / "hf-cache"))
        published = pq.read_table(pulled / "data" / "train-00000-of-00001.parquet")
        assert loaded["train"].num_rows == published.num_rows == 2
        assert list(loaded["train"]["id"]) == published.column("id").to_pylist()

        token = hub.token
    written = [p.read_bytes() for p in list(pulled.rglob("*")) + list(demo_run.rglob("*")) if p.is_file()]
    assert token not in "".join(said) and not any(token.encode() in data for data in written)
