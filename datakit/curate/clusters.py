"""Connected components of "same item" pairs, and the pick of one representative per component.

Dedup steps find pairs of rows that match (near-duplicate or semantically close) and then need the
clusters those pairs imply, plus one row to keep per cluster. Both are done here over whole numpy
arrays: union-find by min-label hooking with pointer jumping (the Shiloach-Vishkin pattern), so the
Python loop runs once per round (a handful of rounds in practice), never once per pair.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """A component label per item 0..n-1 given the pairs (left[k], right[k]); the label is the component's
    smallest index, so labels are stable whatever order the pairs come in.

    >>> components(5, np.array([3, 1]), np.array([4, 0])).tolist()
    [0, 0, 2, 3, 3]
    """
    parent = np.arange(n, dtype=np.int64)
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    if left.shape != right.shape:
        raise ValueError(f"left and right must have the same shape, got {left.shape} and {right.shape}")
    if left.size and (min(left.min(), right.min()) < 0 or max(left.max(), right.max()) >= n):
        raise ValueError(f"pair indices must lie in 0..{n - 1}")
    while left.size:
        # Every parent is a root here (the tree is flat), so hooking roots keeps it a forest.
        a, b = parent[left], parent[right]
        open_ = a != b
        if not open_.any():
            break
        left, right, a, b = left[open_], right[open_], a[open_], b[open_]
        np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))  # a root only ever moves to a smaller one
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return parent


def representatives(labels: np.ndarray, order_key: np.ndarray | Sequence[np.ndarray] | None = None) -> np.ndarray:
    """For each item, the index of the item its component keeps: the smallest by `order_key`, ties by index.

    `order_key` is one array or a sequence of arrays (most significant first), e.g. `-length` to keep the
    longest row; None keeps the earliest. Items whose representative is themselves are the ones to keep:
    `keep = representatives(labels, key) == np.arange(len(labels))`.
    """
    labels = np.asarray(labels)
    n = len(labels)
    index = np.arange(n, dtype=np.int64)
    if order_key is None:
        keys: list[np.ndarray] = []
    elif isinstance(order_key, np.ndarray):
        keys = [order_key]
    else:
        keys = [np.asarray(k) for k in order_key]
    for key in keys:
        if len(key) != n:
            raise ValueError(f"order_key has {len(key)} values for {n} labels")
    order = np.lexsort((index, *reversed(keys), labels))  # lexsort sorts by its last key first
    sorted_labels = labels[order]
    first = np.ones(n, dtype=bool)
    first[1:] = sorted_labels[1:] != sorted_labels[:-1]
    group = np.cumsum(first) - 1  # which component each sorted position belongs to
    rep = np.empty(n, dtype=np.int64)
    rep[order] = order[first][group]
    return rep
