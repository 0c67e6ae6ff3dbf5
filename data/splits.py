"""Containers for loaded, validated features."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .errors import DataError
from .lazy import RowSelection


@dataclass
class FeatureSplit:
    """One split (train, query or retrieval) of paired features.

    Row ``i`` of ``image``, ``text`` and ``label`` describe the same pair.
    ``image`` and ``text`` are float32; ``label`` is float32 multi-hot (0/1),
    or None for a set without labels (it trains and indexes, nothing scores).
    ``source`` is the file or folder the split came from, for messages.
    ``ids`` (N,) str, when the file has them (features this framework
    extracts do); None otherwise.  ``captions`` and ``image_paths`` (N,) str,
    when the set records them (clip-retrieval's metadata), for search results.
    """

    image: np.ndarray
    text: np.ndarray
    label: np.ndarray | None
    source: str
    ids: np.ndarray | None = None
    captions: np.ndarray | None = None
    image_paths: np.ndarray | None = None

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
    def labelled(self):
        """Whether the set has labels: scoring (mAP) needs them, training and indexing do not."""
        return self.train.label is not None

    @property
    def num_labels(self):
        return self.train.label.shape[1] if self.labelled else 0

    def require_labels(self, what: str) -> None:
        """DataError (one line) naming the set when it has no labels."""
        if not self.labelled:
            raise DataError(f"{what} needs labels, and {self.name} ({self.train.source}) has none; "
                            "a set without labels can train and build a code index (scripts/build_index.py)")


def take_rows(split: FeatureSplit, rows, note: str) -> FeatureSplit:
    """The rows `rows` (a slice or an increasing index array) of a split, read into memory;
    `note` is added to its source for messages."""
    pick = lambda column: None if column is None else np.asarray(column[rows])   # noqa: E731
    return FeatureSplit(pick(split.image), pick(split.text), pick(split.label), f"{split.source} ({note})",
                        pick(split.ids), pick(split.captions), pick(split.image_paths))


def select_rows(split: FeatureSplit, rows, note: str) -> FeatureSplit:
    """The rows `rows` (a slice or an increasing index array) of a split, none of them read or copied:
    a numpy column cut by a slice is a view of it, any other column a RowSelection that reads the
    rows asked for (a batch) when asked. The labels are taken into memory: (N, C) is small, and
    every score reads them whole. `note` is added to its source for messages."""
    index = np.arange(*rows.indices(len(split))) if isinstance(rows, slice) else np.asarray(rows)   # (M,)

    def pick(column):
        if column is None:
            return None
        in_memory_slice = isinstance(column, np.ndarray) and isinstance(rows, slice)
        return column[rows] if in_memory_slice else RowSelection(column, index)

    label = None if split.label is None else np.asarray(split.label[rows])
    return FeatureSplit(pick(split.image), pick(split.text), label, f"{split.source} ({note})",
                        pick(split.ids), pick(split.captions), pick(split.image_paths))


def whole_batches(split: FeatureSplit, batch_size: int) -> FeatureSplit:
    """The split cut to a multiple of batch_size rows, as UCMFH's drop_last loaders do (nothing read).
    DataError (one line) when not one whole batch is left to score."""
    keep = len(split) // batch_size * batch_size
    if keep == 0:
        raise DataError(f"--eval_drop_last: {split.source} has {len(split)} rows, fewer than one batch of "
                        f"--eval_batch_size {batch_size}: nothing would be scored (lower --eval_batch_size)")
    return split if keep == len(split) else select_rows(split, slice(0, keep), f"first {keep} rows")


VALIDATION_SEED = 0   # one held-out set for every run, so settings are compared on the same queries


def validation_rows(retrieval: FeatureSplit, count: int) -> tuple:
    """(the `count` database rows held out as validation queries, the other rows), both sorted: a
    fixed draw. DataError (one line) unless 0 < count < database size."""
    check_val_queries(count, retrieval)
    chosen = np.sort(np.random.default_rng(VALIDATION_SEED).choice(len(retrieval), count, replace=False))
    return chosen, np.setdiff1d(np.arange(len(retrieval)), chosen)


def check_val_queries(count: int, retrieval: FeatureSplit) -> None:
    """DataError (one line) unless 0 < count < database size."""
    if not 0 < count < len(retrieval):
        raise DataError(f"--val_queries: {count} must be between 1 and the database size - 1 "
                        f"({len(retrieval) - 1}) of {retrieval.source}")


def hold_out_queries(retrieval: FeatureSplit, count: int) -> tuple:
    """(validation queries, the database without them): `count` database items drawn at random with
    a fixed seed. The training pairs usually come from the database, so a validation query may be
    a training pair; its labels are never used for training, only to score. Neither is a copy: their
    features are read from `retrieval` a batch at a time as they are encoded (select_rows)."""
    chosen, rest = validation_rows(retrieval, count)
    return (select_rows(retrieval, chosen, f"{count} validation queries"),
            select_rows(retrieval, rest, "database without the validation queries"))


def _pair_keys(images, texts) -> list:
    """One key per row of (N, Di) images and (N, Dt) texts, both read as float32: equal keys, equal pairs."""
    images, texts = np.asarray(images, dtype=np.float32), np.asarray(texts, dtype=np.float32)
    return [image.tobytes() + text.tobytes() for image, text in zip(images, texts)]


def without_validation_pairs(data: DatasetSplits, count: int, block: int = 65536) -> tuple:
    """(data whose training pairs leave out every pair equal, image and text row alike, to one of the
    `count` validation queries (validation_rows), how many were left out). A test query is never a
    training pair; a validation query drawn from the database often is (all of wiki's, whose database
    is its training set; about half of a zoo set's), and scores far higher for it (docs/evaluation.md).
    The training rows are read a block at a time; nothing is copied but the index of the kept rows."""
    chosen, _ = validation_rows(data.retrieval, count)
    held_pairs = set(_pair_keys(data.retrieval.image[chosen], data.retrieval.text[chosen]))
    kept = []                                                               # (M,) training row indices
    for start in range(0, len(data.train), block):
        keys = _pair_keys(data.train.image[start:start + block], data.train.text[start:start + block])
        kept += [start + i for i, key in enumerate(keys) if key not in held_pairs]
    dropped = len(data.train) - len(kept)
    if not dropped:
        return data, 0
    train = select_rows(data.train, np.asarray(kept, dtype=np.int64), f"without {dropped} validation queries")
    return replace(data, train=train), dropped
