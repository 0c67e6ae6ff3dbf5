"""Do the two sides of the input agree on who is near whom? A statistic of the data alone.

`cross_modal_overlap`: draw `sample` training pairs (a fixed seed); for each, take its `k`
nearest other pairs by the image features' cosine and by the text features'; the statistic is
the mean share of the two lists that is the same (0: the sides never agree, 1: always; chance is
about k / sample). It needs no labels and no training, and it is fixed by `sample` rather than
by the training set's size, so sets of different sizes are comparable.

It orders the two settings that flip sign across the zoo (docs/zoo.md): the balanced loss's
neighbours in the input features gain most where it is low (each side carries something of its
own), InfoNCE temperature 1.0 where it is high (the sides share much pair-specific content). A
threshold on it, placed on the random zoo sets, did not carry over to the named ones, so no
setting is chosen by it; `scripts/zoo_sets.py` prints it per set.
"""
from __future__ import annotations

import numpy as np

OVERLAP_K = 10        # neighbours per pair
OVERLAP_SAMPLE = 1000  # pairs the statistic is computed on (the zoo sets' training size)


def _nearest(features: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of each row's k most cosine-similar other rows."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T                                          # (n, n)
    np.fill_diagonal(similarity, -np.inf)
    return np.argpartition(-similarity, k - 1, axis=1)[:, :k]


def cross_modal_overlap(image, text, k: int = OVERLAP_K, sample: int = OVERLAP_SAMPLE, seed: int = 0,
                        first: int | None = None) -> float:
    """Mean share of a pair's k nearest pairs by the image features that are also among its k
    nearest by the text features, over `sample` pairs drawn with `seed` (all of them if fewer)
    from the first `first` pairs (default: every pair)."""
    if len(image) != len(text):
        raise ValueError(f"image and text hold {len(image)} and {len(text)} rows: they must be pairs")
    count = len(image) if first is None else min(first, len(image))
    if count <= k:
        raise ValueError(f"{count} pairs are too few for {k} neighbours each")
    rows = np.arange(count)
    if len(rows) > sample:   # rows in increasing order: lazily stored (HDF5) features read only these
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=sample, replace=False))
    image, text = (np.asarray(side[rows], dtype=np.float32) for side in (image, text))
    by_image, by_text = _nearest(image, k), _nearest(text, k)
    shared = [len(np.intersect1d(a, b, assume_unique=True)) for a, b in zip(by_image, by_text)]
    return float(np.mean(shared) / k)
