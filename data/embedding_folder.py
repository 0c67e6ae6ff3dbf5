"""clip-retrieval's embedding folder as a dataset: paired CLIP features without labels.

Layout (what `clip-retrieval inference` writes; shard i of every kind holds the same items):
  img_emb/img_emb_<i>.npy           (N_i, D) image embeddings (float16 as written; any numeric 2-D)
  text_emb/text_emb_<i>.npy         (N_i, D') text embeddings of the same items
  metadata/metadata_<i>.parquet     optional, N_i rows: caption, image_path or url, key, ...

Shards are taken in the order of i. The embeddings are read on demand (data.lazy.NpyRows: plain
file reads, nothing memory-mapped), so a set larger than memory trains with stream_train.
With no labels, such a set trains and builds a code index; nothing can be scored:
  train, retrieval   every pair (the database of a code index)
  query              the first QUERY_ROWS pairs, only for the code histograms of training
Ids come from the metadata's `key`, `image_path` or `url` column (the first one present; the row
numbers when its values are not unique, or with no metadata); captions and image paths from
`caption` and `image_path`. The metadata is read when first needed (a code index), not to train.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import DataError, describe
from .lazy import NpyRows
from .splits import DatasetSplits, FeatureSplit
from .validate import check_finite

QUERY_ROWS = 1000
ID_COLUMNS = ("key", "image_path", "url")


def is_embedding_folder(folder) -> bool:
    return (Path(folder) / "img_emb").is_dir() or (Path(folder) / "text_emb").is_dir()


def _shards(folder: Path, kind: str, suffix: str) -> dict:
    """{shard number: path} of <folder>/<kind>/<kind>_<i><suffix>."""
    pattern = re.compile(rf"{kind}_(\d+){re.escape(suffix)}")
    return {int(m.group(1)): path for path in (folder / kind).glob(f"{kind}_*{suffix}")
            if (m := pattern.fullmatch(path.name))}


class MetadataColumn:
    """One column of the parquet metadata shards, as (N,) str, read on first use: training never
    needs it, and 2M captions as Python strings would take more memory than a window of pairs.
    An id column whose values are not unique gives the row numbers instead."""

    def __init__(self, paths: list, counts: list, name: str, ids: bool = False, stop: int | None = None):
        self.paths, self.counts, self.name, self.ids = paths, counts, name, ids
        self.stop = sum(counts) if stop is None else min(stop, sum(counts))
        self._values = None

    def head(self, stop: int) -> "MetadataColumn":
        return MetadataColumn(self.paths, self.counts, self.name, self.ids, stop)

    def values(self) -> np.ndarray:
        if self._values is None:
            import pyarrow.parquet as pq

            parts, have = [], 0
            for path, count in zip(self.paths, self.counts):
                if have >= self.stop:
                    break
                try:
                    column = pq.read_table(path, columns=[self.name]).column(self.name)
                except Exception as exc:   # pyarrow raises its own types for a broken file
                    raise DataError(f"{path}: column '{self.name}' is unreadable ({describe(exc)})") from None
                parts.append(np.array(["" if v is None else str(v) for v in column.to_pylist()[:self.stop - have]]))
                have += count
            values = np.concatenate(parts) if parts else np.array([], dtype=str)
            if self.ids and len(np.unique(values)) != len(values):
                values = np.arange(self.stop).astype(str)
            self._values = values
        return self._values

    def __len__(self):
        return self.stop

    def __getitem__(self, rows):
        return self.values()[rows]

    def __array__(self, dtype=None, copy=None):
        return self.values() if dtype is None else self.values().astype(dtype)

    def tolist(self) -> list:
        return self.values().tolist()


def _metadata(folder: Path, shards: list, counts: list) -> dict:
    """{column name: MetadataColumn} of the id, caption and image-path columns that every parquet
    shard has ({} without metadata); checked now for row counts, read later."""
    found = _shards(folder, "metadata", ".parquet")
    if not found or sorted(found) != shards:
        return {}
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{folder}/metadata: reading .parquet files needs pyarrow "
                        "(pip install -r requirements.txt)") from None
    paths, names = [found[i] for i in shards], set(ID_COLUMNS) | {"caption", "image_path"}
    for path, count in zip(paths, counts):
        try:
            info = pq.read_metadata(path)
        except Exception as exc:   # pyarrow raises its own types for a broken file
            raise DataError(f"{path}: not a readable parquet file ({describe(exc)})") from None
        if info.num_rows != count:
            raise DataError(f"{path}: {info.num_rows} rows, but its embedding shards have {count}")
        names &= set(info.schema.names)
    return {name: MetadataColumn(paths, counts, name, ids=name in ID_COLUMNS) for name in sorted(names)}


def load_embedding_folder(folder, name) -> DatasetSplits:
    """The folder's pairs as train/query/retrieval splits without labels (see the module doc)."""
    folder = Path(folder)
    image, text = _shards(folder, "img_emb", ".npy"), _shards(folder, "text_emb", ".npy")
    if not image or not text:
        missing = "img_emb/img_emb_0.npy" if not image else "text_emb/text_emb_0.npy"
        raise DataError(f"{folder}: an embedding folder needs both image and text embeddings; "
                        f"no {missing} (or other shards) found")
    if sorted(image) != sorted(text):
        only = sorted(set(image) ^ set(text))
        raise DataError(f"{folder}: img_emb and text_emb have different shards (shard {only[0]} is in one only)")
    shards = sorted(image)
    images, texts = NpyRows([image[i] for i in shards]), NpyRows([text[i] for i in shards])
    counts = images.shard_rows
    for i, image_rows, text_rows in zip(shards, counts, texts.shard_rows):
        if text_rows != image_rows:
            raise DataError(f"{text[i]}: {text_rows} rows, but {image[i]} has {image_rows}")
    if len(images) == 0:
        raise DataError(f"{folder}: the embedding shards hold no rows")
    check_finite(images, f"{folder}/img_emb", "img_emb")
    check_finite(texts, f"{folder}/text_emb", "text_emb")
    details = _metadata(folder, shards, counts)
    ids = next((details[c] for c in ID_COLUMNS if c in details), None)
    everything = FeatureSplit(images, texts, None, str(folder), ids, captions=details.get("caption"),
                              image_paths=details.get("image_path"))
    head = min(QUERY_ROWS, len(images))
    query = FeatureSplit(images[:head], texts[:head], None, f"{folder} (first {head} pairs)",
                         *(None if c is None else c.head(head) for c in (ids, everything.captions,
                                                                          everything.image_paths)))
    return DatasetSplits(name=name, train=everything, query=query, retrieval=everything)
