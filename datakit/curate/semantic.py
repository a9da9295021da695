"""Semantic deduplication: drop rows whose sentence embeddings are near-identical to a kept row's (SemDeDup).

The method follows SemDeDup (Abbas et al. 2023, "SemDeDup: Data-efficient learning at web-scale through
semantic deduplication"): embed every text, cluster the embeddings with spherical k-means, and within each
cluster link the pairs whose cosine similarity reaches a threshold (the paper's `1 - eps`). Each connected
group of linked rows keeps one row. Clustering is what makes it scale: only rows of one cluster are compared,
in fixed-size tiles, so no n x n matrix ever exists. Duplicates that k-means puts in different clusters are
missed; `clusters: 1` compares all pairs exactly.

Two passes over shared storage, like the exact `dedup` step:

- build (per shard): the texts are embedded (float32, L2-normalized) and stored in the part folder with
  their lengths and scores, so a resumed run never embeds a built shard again.
- finalize (needs only the parts, memory-mapped): k-means on a seeded sample, assignment of every row,
  then per cluster a tiled similarity matmul, union-find over the pairs and one kept row per group.
  torch runs it on the GPU when there is one.
- apply (per shard): that shard's kept rows pass (or every row gets its group label).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.curate.clusters import components, representatives
from datakit.curate.text import select_text
from datakit.engines.spec import EmbedderSpec
from datakit.errors import RecipeError
from datakit.generate.rows import with_columns
from datakit.pipeline.params import param
from datakit.pipeline.registry import register
from datakit.pipeline.step import GlobalStep, Index, MapResult
from datakit.pipeline.steps._arrow import require_columns

KeepRule = Literal["earliest", "longest", "best", "central", "farthest"]

AUTO_EXACT_ROWS = 10_000  # up to this many rows, `clusters: auto` compares all pairs (seconds on a CPU)
SAMPLE_PER_CENTROID = 256  # k-means fits on at most this many rows per cluster (faiss's default sample)
SIMILARITY_SLACK = 1e-6  # float32 dot products of equal unit vectors may fall just short of 1.0
COMPACT_PAIRS = 1 << 22  # similar pairs held per cluster before they are reduced to one link per row


@register("semantic_dedup")
class SemanticDedup(GlobalStep):
    """Drop rows that say nearly the same thing as another row (cosine similarity of sentence embeddings at or
    above `threshold`), keeping one row per group of duplicates; SemDeDup-style, clustered with k-means.

    `keep` picks the row a group keeps: `earliest` (the default: first in dataset order, stable under
    re-sharding), `longest` text, `best` by `score_column`, `central` (closest to its cluster's centroid, the
    normalized mean of the cluster's rows), or `farthest` from it, which is SemDeDup's choice (the least
    prototypical example survives). Ties go to the earliest row. With `cluster_column`, nothing is dropped:
    every row gets its group's label instead.

    Metrics: `embedded` rows and `embed_seconds` (the build pass, which the step's own time leaves out),
    `clusters` and `duplicate_groups` found, and `finalize_seconds`.
    """

    thread_safe = False  # one sentence-transformers model serves the process; its tokenizer takes one caller
    uses_seed = True

    @dataclass(frozen=True)
    class Params:
        model: EmbedderSpec = param(help="the sentence embedder (a name from the recipe's 'models', or a mapping)")
        column: str = param("text", help="text column, or a column of chat messages whose turns are joined")
        role: str | None = param(None, help="with chat messages: embed only the turns of this role (e.g. user); "
                                            "default all turns")
        threshold: float = param(0.95, help="cosine similarity at or above which two rows are duplicates, in (0, 1] "
                                            "(SemDeDup's 1 - eps)")
        clusters: int | Literal["auto"] = param("auto", help="k-means clusters; 1 compares all pairs exactly; auto: "
                                                             f"1 up to {AUTO_EXACT_ROWS} rows, else ceil(sqrt(rows)/4)")
        keep: KeepRule = param("earliest", help="which row of a duplicate group stays: earliest, longest, best "
                                                "(highest score_column), central or farthest (SemDeDup) from the "
                                                "cluster centroid")
        score_column: str | None = param(None, help="numeric column that keep: best maximizes (nulls rank last)")
        init: Literal["k-means++", "random"] = param("k-means++", help="k-means initialization: k-means++ seeding "
                                                                       "or a random sample of rows")
        iterations: int = param(20, help="k-means iterations at most (fewer once no row changes cluster: "
                                           "the result is the same)")
        seed: int | None = param(None, help="k-means seed (default: the run seed)")
        device: str = param("auto", help="torch device for k-means and similarities: auto (cuda when torch sees "
                                         "a GPU, else cpu), cpu, cuda or cuda:N")
        batch_size: int = param(4096, help="rows per side of a similarity tile (a tile holds batch_size^2 floats)")
        cluster_column: str | None = param(None, help="label rows instead of dropping them: this column gets the "
                                                      "input position of the row each row's group keeps")

        def __post_init__(self) -> None:
            if not 0 < self.threshold <= 1:
                raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
            if self.clusters != "auto" and self.clusters < 1:
                raise ValueError(f"clusters must be at least 1 (or auto), got {self.clusters}")
            if self.keep == "best" and not self.score_column:
                raise ValueError("score_column is needed with keep: best (the column whose highest value a group "
                                 "keeps)")
            if self.score_column and self.keep != "best":
                raise ValueError(f"score_column is only used with keep: best (keep is {self.keep})")
            if self.iterations < 1:
                raise ValueError(f"iterations must be at least 1, got {self.iterations}")
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
            if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
                raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:  # stored embeddings are only comparable under one embedding library
            return f"sentence-transformers {version('sentence-transformers')}"
        except PackageNotFoundError:
            return ""

    def setup(self) -> None:
        from datakit.engines import load_embedder

        self.embedder = load_embedder(self.params.model)
        self._embedding = threading.Lock()  # builds of several shards may overlap; the model takes one at a time

    def build(self, shard: int, batch: pa.RecordBatch, part: Path) -> None:
        p = self.params
        texts = select_text(batch, p.column, p.role, self.context.step_id).fill_null("").to_list()
        if p.score_column:
            require_columns(batch, [p.score_column], self.context.step_id, "score_column")
            score = batch.column(p.score_column)
            if not (pa.types.is_integer(score.type) or pa.types.is_floating(score.type)):
                raise RecipeError(f"score_column '{p.score_column}' must be numeric, not {score.type}",
                                  field=f"steps.{self.context.step_id}.with.score_column")
            values = pc.cast(score, pa.float64()).to_numpy(zero_copy_only=False)
            np.save(part / "score.npy", np.where(np.isnan(values), -np.inf, values))  # nulls arrive as NaN
        with self._embedding:
            started = time.perf_counter()
            vectors = self.embedder.embed(texts)
            seconds = time.perf_counter() - started
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        np.save(part / "embeddings.npy", (vectors / np.maximum(norms, 1e-12)).astype(np.float32))
        np.save(part / "length.npy", np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
        (part / "build.json").write_text(json.dumps({"rows": len(texts), "seconds": round(seconds, 4)}))

    def finalize(self, index: Index, final: Path) -> None:
        p = self.params
        started = time.perf_counter()
        parts = _Parts(index)
        n = int(parts.offsets[-1])
        k = min(n, _auto_clusters(n) if p.clusters == "auto" else p.clusters) if n else 0
        device = _device(p.device)
        seed = self.context.seed if p.seed is None else p.seed
        cluster_of = spherical_kmeans(parts, k, p.iterations, p.init, seed, device, p.batch_size) if k > 1 \
            else np.zeros(n, dtype=np.int64)
        group_of = np.arange(n, dtype=np.int64)  # each row's duplicate group: its smallest position
        centrality = np.zeros(n, dtype=np.float32) if p.keep in ("central", "farthest") else None
        order = np.argsort(cluster_of, kind="stable")  # members of each cluster, in dataset order
        bounds = np.searchsorted(cluster_of[order], np.arange(k + 1)) if k > 1 else np.array([0, n])
        for c in range(len(bounds) - 1):
            members = order[bounds[c]:bounds[c + 1]]
            if len(members) > 1:
                group_of[members] = members[_link_cluster(parts, members, p.threshold, device, p.batch_size,
                                                         centrality)]
        priority = self._priority(parts, centrality)
        group = representatives(group_of, None if priority is None else -priority)
        keep = group == np.arange(n)
        sizes = np.bincount(group_of, minlength=n)
        shard_of = np.searchsorted(parts.offsets, np.arange(n), side="right") - 1
        groups_per_shard = np.bincount(shard_of[keep & (sizes[group_of] > 1)], minlength=parts.count)
        firsts = order[bounds[:-1][np.diff(bounds) > 0]]  # the first row of every non-empty cluster
        clusters_per_shard = np.bincount(shard_of[firsts], minlength=parts.count)
        np.save(final / "keep.npy", keep)
        np.save(final / "group.npy", group)
        np.save(final / "offsets.npy", parts.offsets)
        (final / "stats.json").write_text(json.dumps({
            "clusters": clusters_per_shard.tolist(), "groups": groups_per_shard.tolist(),
            "embedded": parts.rows.tolist(), "embed_seconds": parts.seconds,
            "finalize_seconds": round(time.perf_counter() - started, 4), "device": device,
        }))

    def _priority(self, parts: _Parts, centrality: np.ndarray | None) -> np.ndarray | None:
        """Per row, the value a group maximizes when choosing its kept row (None: the earliest row wins)."""
        rule = self.params.keep
        if rule == "longest":
            return parts.concat("length.npy").astype(np.float64)
        if rule == "best":
            return parts.concat("score.npy")
        if centrality is not None:
            return centrality.astype(np.float64) if rule == "central" else -centrality.astype(np.float64)
        return None

    def apply(self, shard: int, batch: pa.RecordBatch | None, index: Index) -> MapResult:
        assert batch is not None
        offsets = np.load(index.final / "offsets.npy")
        start, stop = int(offsets[shard]), int(offsets[shard + 1])
        stats = json.loads((index.final / "stats.json").read_text())
        metrics = {"embedded": stats["embedded"][shard], "embed_seconds": stats["embed_seconds"][shard],
                   "clusters": stats["clusters"][shard], "duplicate_groups": stats["groups"][shard]}
        if shard == 0:
            metrics["finalize_seconds"] = stats["finalize_seconds"]
        if self.params.cluster_column:
            group = np.load(index.final / "group.npy", mmap_mode="r")[start:stop]
            labels = {self.params.cluster_column: pa.array(np.asarray(group, dtype=np.int64))}
            return MapResult(with_columns(pa.Table.from_batches([batch]), labels), metrics=metrics)
        keep = np.load(index.final / "keep.npy", mmap_mode="r")[start:stop]
        kept = batch.filter(pa.array(np.asarray(keep)))
        return MapResult(kept, dropped={"semantic_duplicate": batch.num_rows - kept.num_rows}, metrics=metrics)


class _Parts:
    """The embeddings of every built shard, memory-mapped, addressed by dataset position."""

    def __init__(self, index: Index) -> None:
        self.folders = [index.part(s) for s in range(index.num_shards or 0)]
        self.count = len(self.folders)
        self.arrays = [np.load(f / "embeddings.npy", mmap_mode="r") for f in self.folders]
        self.rows = np.array([len(a) for a in self.arrays], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.rows)]).astype(np.int64)
        self.dim = self.arrays[0].shape[1] if self.arrays else 0
        self.seconds = [json.loads((f / "build.json").read_text())["seconds"] for f in self.folders]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The embeddings of `rows` (ascending dataset positions), copied into memory."""
        cuts = np.searchsorted(rows, self.offsets)
        pieces = [self.arrays[s][rows[cuts[s]:cuts[s + 1]] - self.offsets[s]]
                  for s in np.flatnonzero(np.diff(cuts))]
        return np.concatenate(pieces) if pieces else np.zeros((0, self.dim), dtype=np.float32)

    def blocks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """Consecutive slices of at most `size` rows, in dataset order: (first position, embeddings)."""
        for s, array in enumerate(self.arrays):
            for lo in range(0, len(array), size):
                yield int(self.offsets[s]) + lo, np.array(array[lo:lo + size])  # torch wants writable memory

    def concat(self, name: str) -> np.ndarray:
        return np.concatenate([np.load(f / name) for f in self.folders])


def _auto_clusters(n: int) -> int:
    # Rows per cluster grow like sqrt(n): tiles stay cheap while few near-duplicates straddle two clusters.
    return 1 if n <= AUTO_EXACT_ROWS else math.ceil(math.sqrt(n) / 4)


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def spherical_kmeans(parts: _Parts, k: int, iterations: int, init: str, seed: int, device: str,
                     block: int) -> np.ndarray:
    """The cluster of every row: spherical k-means (cosine) fitted on a seeded sample, then applied to all rows.

    Centroids are fitted on at most SAMPLE_PER_CENTROID rows per cluster, as faiss does; a cluster that
    loses all its rows keeps its previous centroid. Random draws come from numpy, so they do not depend on
    the device.
    """
    import torch

    rng = np.random.default_rng(seed)
    n = int(parts.offsets[-1])
    sample = np.sort(rng.choice(n, size=min(n, SAMPLE_PER_CENTROID * k), replace=False))
    x = torch.from_numpy(parts.take(sample)).to(device)
    if init == "random":
        centroids = x[torch.from_numpy(np.sort(rng.choice(len(x), size=k, replace=False))).to(device)].clone()
    else:
        centroids = _kmeans_plus_plus(x, k, rng)
    previous = None
    for _ in range(iterations):
        assign = _nearest(x, centroids, block)
        if previous is not None and torch.equal(assign, previous):
            break  # the centroids would come out the same again: every later iteration is a no-op
        sums = torch.zeros_like(centroids)
        for i in range(0, len(x), block):  # a one-hot matmul: far faster than index_add_ on CPU
            sums += torch.nn.functional.one_hot(assign[i:i + block], k).T.to(x.dtype) @ x[i:i + block]
        filled = torch.bincount(assign, minlength=k) > 0
        centroids[filled] = torch.nn.functional.normalize(sums[filled], dim=1)
        previous = assign
    labels = np.empty(n, dtype=np.int64)
    for first, rows in parts.blocks(block):
        labels[first:first + len(rows)] = _nearest(torch.from_numpy(rows).to(device), centroids, block).cpu().numpy()
    return labels


def _kmeans_plus_plus(x: Any, k: int, rng: np.random.Generator) -> Any:
    """k-means++ seeding (Arthur and Vassilvitskii 2007) under squared euclidean distance of unit vectors."""
    import torch

    chosen = [int(rng.integers(len(x)))]
    best = x @ x[chosen[0]]
    for _ in range(1, k):
        weights = torch.clamp(2 - 2 * best, min=0).double()
        total = float(weights.sum())
        if total <= 0:  # fewer distinct points than clusters: any unchosen row will do
            pick = int(rng.choice(np.setdiff1d(np.arange(len(x)), chosen)))
        else:
            target = torch.tensor(rng.random() * total, dtype=torch.float64, device=x.device)
            pick = min(int(torch.searchsorted(torch.cumsum(weights, 0), target)), len(x) - 1)
        chosen.append(pick)
        best = torch.maximum(best, x @ x[pick])
    return x[torch.tensor(chosen, device=x.device)].clone()


def _nearest(x: Any, centroids: Any, block: int) -> Any:
    import torch

    return torch.cat([torch.argmax(x[i:i + block] @ centroids.T, dim=1) for i in range(0, len(x), block)]) \
        if len(x) else torch.zeros(0, dtype=torch.long, device=x.device)


def _link_cluster(parts: _Parts, members: np.ndarray, threshold: float, device: str, block: int,
                  centrality: np.ndarray | None) -> np.ndarray:
    """The duplicate groups within one cluster: a label per member (the group's first member), from every
    pair at or above `threshold`, found tile by tile over the upper triangle."""
    import torch

    x = torch.from_numpy(parts.take(members)).to(device)
    if centrality is not None:
        centroid = torch.nn.functional.normalize(x.mean(dim=0), dim=0)
        centrality[members] = (x @ centroid).cpu().numpy()
    limit = threshold - SIMILARITY_SLACK
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    held = 0
    for i in range(0, len(x), block):
        for j in range(i, len(x), block):
            hits = (x[i:i + block] @ x[j:j + block].T) >= limit
            if hits.device.type == "cpu":
                a, b = np.nonzero(hits.numpy())  # numpy's nonzero is far faster than torch's on CPU
            else:
                a, b = (t.cpu().numpy() for t in hits.nonzero(as_tuple=True))
            if i == j:
                a, b = a[a < b], b[a < b]
            left.append(a + i)
            right.append(b + j)
            held += len(a)
            if held > COMPACT_PAIRS:  # a cluster full of duplicates: keep one pair per member, not all of them
                labels = components(len(x), np.concatenate(left), np.concatenate(right))
                linked = np.flatnonzero(labels != np.arange(len(x)))
                left, right, held = [linked], [labels[linked]], len(linked)
    return components(len(x), np.concatenate(left), np.concatenate(right))
