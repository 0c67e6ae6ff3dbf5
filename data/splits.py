"""Containers for loaded, validated features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FeatureSplit:
    """One split (train, query or retrieval) of paired features.

    Row ``i`` of ``image``, ``text`` and ``label`` describe the same pair.
    ``image`` and ``text`` are float32; ``label`` is float32 multi-hot (0/1).
    ``source`` is the file or folder the split came from, for messages.
    ``ids`` (N,) str, when the file has them (features this framework
    extracts do); None otherwise.
    """

    image: np.ndarray
    text: np.ndarray
    label: np.ndarray
    source: str
    ids: np.ndarray | None = None

    def __len__(self):
        return len(self.image)


@dataclass
class DatasetSplits:
    """The three splits of a dataset, checked to have matching widths."""

    name: str
    train: FeatureSplit
    query: FeatureSplit
    retrieval: FeatureSplit

    @property
    def image_dim(self):
        return self.train.image.shape[1]

    @property
    def text_dim(self):
        return self.train.text.shape[1]

    @property
    def num_labels(self):
        return self.train.label.shape[1]
