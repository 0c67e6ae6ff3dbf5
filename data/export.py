"""Writing extracted features in UCMFH's layout (and HDF5), with ids and metadata.

Output folder (every file written atomically):
  train.pkl, query.pkl, retrieval.pkl   dicts: image, text (N x D), label (N x C uint8), ids (N,)
  train.h5, query.h5, retrieval.h5      the same datasets, metadata as attributes (--format h5 or both)
  splits.json                           the seed, the sizes and the ids of every split
  metadata.json                         model, weights file and sha256, preprocessing, date, counts, labels
  extraction_report.json                the items skipped, with the reason
  items.json                            {id: {"image": absolute image path, "caption": first text}} of the
                                        kept items, for search results (scripts/build_index.py reads it)
"""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np

from runio.atomic import atomic_write_bytes, atomic_write_json

from .errors import DataError
from .validate import SPLIT_NAMES

FORMATS = ("pkl", "h5", "both")
DTYPES = ("float32", "float16")


def _h5_bytes(arrays: dict, metadata: dict) -> bytes:
    """An in-memory HDF5 file, so it can be written atomically like the rest."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w", track_order=True) as handle:
        for key, value in arrays.items():
            if value.dtype.kind == "U":
                value = value.astype(object)
                handle.create_dataset(key, data=value, dtype=h5py.string_dtype())
            else:
                handle.create_dataset(key, data=value, chunks=(min(len(value), 4096), value.shape[1])
                                      if value.ndim == 2 else None)
        for key, value in metadata.items():
            handle.attrs[key] = str(value) if isinstance(value, str) else json.dumps(value)
    return buffer.getvalue()


def write_feature_dataset(out_dir, dataset, features, splits: dict, metadata: dict, fmt="pkl",
                          dtype="float32") -> dict:
    """Write the kept items of `features` as train/query/retrieval in `out_dir`.
    `splits` maps split name -> indices into the kept items. Returns the split sizes."""
    if fmt not in FORMATS:
        raise DataError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise DataError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    out_dir = Path(out_dir)
    kept = np.flatnonzero(features.ok)
    ids = np.array([dataset.items[i].id for i in kept])
    columns = {"image": features.image[kept].astype(dtype), "text": features.text[kept].astype(dtype),
               "label": dataset.label_matrix()[kept].astype(np.uint8), "ids": ids}
    for split in SPLIT_NAMES:
        rows = splits[split]
        arrays = {key: value[rows] for key, value in columns.items()}
        if fmt in ("pkl", "both"):
            atomic_write_bytes(out_dir / f"{split}.pkl", pickle.dumps(arrays, protocol=4))
        if fmt in ("h5", "both"):
            atomic_write_bytes(out_dir / f"{split}.h5", _h5_bytes(arrays, {**metadata, "split": split}))
    sizes = {split: int(len(splits[split])) for split in SPLIT_NAMES}
    atomic_write_json(out_dir / "splits.json", {"seed": metadata.get("split_seed"), "sizes": sizes,
                                                **{split: ids[splits[split]].tolist() for split in SPLIT_NAMES}})
    atomic_write_json(out_dir / "metadata.json", {**metadata, "sizes": sizes})
    atomic_write_json(out_dir / "items.json", {dataset.items[i].id: {
        "image": str(Path(dataset.items[i].image).resolve()), "caption": dataset.items[i].texts[0]} for i in kept})
    skipped = [{"id": dataset.items[i].id, "image": str(dataset.items[i].image), "reason": reason}
               for i, reason in sorted(features.failures.items())]
    atomic_write_json(out_dir / "extraction_report.json",
                      {"items": len(dataset.items), "kept": int(len(kept)), "skipped": skipped})
    return sizes
