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
Ids come from the metadata's `key`, `image_path` or `url` column (the first one present and
unique), else the row number; captions and image paths from `caption` and `image_path` (a relative
path is taken relative to the embedding folder).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import DataError, describe
from .lazy import NpyRows
from .splits import DatasetSplits, FeatureSplit, take_rows
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


def _read_metadata(paths: list, rows: list, folder: Path) -> dict:
    """{column: (N,) str array} of the id, caption and image-path columns of the parquet shards."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{folder}/metadata: reading .parquet files needs pyarrow "
                        "(pip install -r requirements.txt)") from None
    wanted = set(ID_COLUMNS) | {"caption"}
    columns: dict = {}
    for path, count in zip(paths, rows):
        try:
            present = wanted & set(pq.read_schema(path).names)
            table = pq.read_table(path, columns=sorted(present))
        except Exception as exc:   # pyarrow raises its own types for a broken file
            raise DataError(f"{path}: not a readable parquet file ({describe(exc)})") from None
        if table.num_rows != count:
            raise DataError(f"{path}: {table.num_rows} rows, but its embedding shards have {count}")
        for name in sorted(present):
            values = ["" if v is None else str(v) for v in table.column(name).to_pylist()]
            columns.setdefault(name, []).append(values)
    complete = {name: np.array([v for part in parts for v in part]) for name, parts in columns.items()
                if len(parts) == len(paths)}
    return complete


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
    counts = [NpyRows([image[i]]).shape[0] for i in shards]
    for i, count in zip(shards, counts):
        if NpyRows([text[i]]).shape[0] != count:
            raise DataError(f"{text[i]}: {NpyRows([text[i]]).shape[0]} rows, but {image[i]} has {count}")
    if len(images) == 0:
        raise DataError(f"{folder}: the embedding shards hold no rows")
    check_finite(images, f"{folder}/img_emb", "img_emb")
    check_finite(texts, f"{folder}/text_emb", "text_emb")
    metadata = _shards(folder, "metadata", ".parquet")
    details = _read_metadata([metadata[i] for i in shards], counts, folder) \
        if metadata and sorted(metadata) == shards else {}
    ids = next((details[c] for c in ID_COLUMNS if c in details and len(np.unique(details[c])) == len(images)),
               np.arange(len(images)).astype(str))
    paths = details.get("image_path")
    if paths is not None:
        paths = np.array([str(folder / p) if p and not Path(p).is_absolute() else p for p in paths.tolist()])
    everything = FeatureSplit(images, texts, None, str(folder), ids, captions=details.get("caption"),
                              image_paths=paths)
    query = take_rows(everything, slice(0, QUERY_ROWS), f"first {min(QUERY_ROWS, len(images))} pairs")
    return DatasetSplits(name=name, train=everything, query=query, retrieval=everything)
