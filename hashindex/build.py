"""Building a code index: encode a split with a trained checkpoint, pack the codes, and record
what a search needs to trust them (the library behind scripts/build_index.py).

Every item gets an image code and a text code, under the `unimodal` protocol by default (image code
from the image alone, text code from the text alone: what a real search compares a query with) or
`paired` (UCMFH's: both from the pair). The index also holds the ids, labels (with names when the
features' metadata.json has them), captions (given, or recorded with the features), the items' image
paths when the features were extracted from images, and metadata: the checkpoint and its
sha256, code length, protocol, model keys and the CLIP encoder that made the features.
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from config import ConfigError, resolve_device
from data import DataError, load_dataset
from data.clip_encoder import sha256_of
from data.splits import FeatureSplit
from runio.logs import progress
from hashindex.hamming_search import HammingSearcher, store_approximate
from hashindex.index_file import CodeIndex, pack_codes
from runio.checkpoint import load_trained_model

SPLITS = ("retrieval", "query", "train")
MODALITIES = ("image", "text")


def read_metadata(folder: Path) -> dict:
    """The metadata.json that extract_features.py writes beside the features ({} when absent)."""
    metadata = folder / "metadata.json"
    if not metadata.is_file():
        return {}
    try:
        saved = json.loads(metadata.read_text())
    except ValueError:
        raise DataError(f"{metadata}: not valid JSON") from None
    if not isinstance(saved, dict):
        raise DataError(f"{metadata}: expected a JSON object, got {type(saved).__name__}")
    return saved


def encoder_record(metadata: dict, clip_model: str, clip_pretrained: str) -> dict | None:
    """The CLIP encoder that made the features: from the flags, else from the features' metadata;
    None when neither says (then only --query_id works)."""
    if bool(clip_model) != bool(clip_pretrained):
        raise ConfigError("--clip_model and --clip_pretrained go together (the model and its weights)")
    if clip_model:
        weights = Path(clip_pretrained)
        record = {"clip_model": clip_model, "pretrained": clip_pretrained, "weights_file": None,
                  "weights_sha256": None}
        if weights.is_file():
            record.update(pretrained=str(weights.resolve()), weights_file=str(weights.resolve()),
                          weights_sha256=sha256_of(weights))
        return record
    if metadata.get("clip_model") and metadata.get("pretrained"):
        return {k: metadata.get(k) for k in ("clip_model", "pretrained", "weights_file", "weights_sha256")}
    return None


def label_names(metadata: dict, count: int) -> list | None:
    """Label names from the features' metadata, when it lists `count` of them."""
    names = metadata.get("label_names")
    if isinstance(names, list) and len(names) == count:
        return [str(n) for n in names]
    return None


def read_captions(path: str, ids: np.ndarray) -> np.ndarray | None:
    """(N,) captions in row order from a JSON list (one per row) or object {id: caption}."""
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"--captions {path}: file not found") from None
    except ValueError as err:
        raise DataError(f"--captions {path}: not valid JSON ({err})") from None
    if isinstance(data, list):
        if len(data) != len(ids):
            raise DataError(f"--captions {path}: {len(data)} captions for {len(ids)} database items")
        return np.array([str(c) for c in data])
    if isinstance(data, dict):
        return np.array([str(data.get(i, "")) for i in ids.tolist()])
    raise DataError(f"--captions {path}: expected a list or an object of captions, got {type(data).__name__}")


def item_details(folder: Path, rows) -> tuple:
    """(captions, image paths), each (N,) str or None, of a split's rows: from the split itself (an
    embedding folder's metadata; a relative path is relative to `folder`), else from the items.json
    that extract_features.py writes."""
    captions, paths = (None if column is None else np.asarray(column) for column in (rows.captions, rows.image_paths))
    if paths is not None:
        paths = np.array([str(folder / p) if p and not os.path.isabs(p) else p for p in paths.tolist()])
    items = folder / "items.json"
    if (captions is None or paths is None) and rows.ids is not None and items.is_file():
        try:
            known = json.loads(items.read_text(encoding="utf-8"))
        except ValueError:
            raise DataError(f"{items}: not valid JSON") from None
        if not isinstance(known, dict):
            raise DataError(f"{items}: expected an object {{id: {{image, caption}}}}, got {type(known).__name__}")
        found = [known.get(i) if isinstance(known.get(i), dict) else {} for i in rows.ids.tolist()]
        if captions is None:
            captions = np.array([str(item.get("caption", "")) for item in found])
        if paths is None:
            paths = np.array([str(item.get("image", "")) for item in found])
    if paths is not None and not any(paths.tolist()):
        paths = None
    return captions, paths


def image_root(paths) -> str | None:
    """The deepest folder holding every image (the only place a search page serves images from)."""
    folders = {str(Path(p).parent) for p in paths.tolist() if p} if paths is not None else set()
    return os.path.commonpath(sorted(folders)) if folders else None


STREAM_ROWS = 65536   # rows encoded, then packed, at a time: memory stays bounded by this, not the split


def encode_packed(model, rows, protocol: str, batch_size: int, block: int = STREAM_ROWS) -> tuple:
    """(N, ceil(bits/8)) uint8 packed image and text codes of every row of a split, encoded `block`
    rows at a time (features read lazily where the split is stored so), so only the packed codes
    of the whole split are ever held: 8 bytes per item and side at 64 bits."""
    image, text = [], []
    for start in progress(range(0, len(rows), block), desc="encoding", unit="block"):
        block_rows = slice(start, start + block)   # the features alone: labels, ids and captions are not needed
        part = FeatureSplit(np.asarray(rows.image[block_rows]), np.asarray(rows.text[block_rows]), None, rows.source)
        image_outputs, text_outputs = model.encode_split(part, protocol, batch_size)
        image.append(pack_codes(image_outputs))
        text.append(pack_codes(text_outputs))
    return np.concatenate(image), np.concatenate(text)


def build_index(checkpoint, dataset: str = "", data_root: str = "", split: str = "retrieval",
                protocol: str = "unimodal", kind: str = "flat", clip_model: str = "", clip_pretrained: str = "",
                captions: str = "", batch_size: int = 1024, device: str = "auto", log=print) -> CodeIndex:
    """The code index of one split (default: the database) of `dataset` (default: the checkpoint's),
    encoded by `checkpoint` under `protocol`; `kind` hnsw/ivf adds a stored approximate index.
    ConfigError / DataError name the file or option at fault."""
    model, info = load_trained_model(checkpoint, resolve_device(device), log)
    saved = info["config"]
    data_root = data_root or saved.get("data_root", "data")
    data = load_dataset(dataset or saved["dataset"], data_root, saved.get("wiki_text", "lda"))
    rows = getattr(data, split)
    if (data.image_dim, data.text_dim) != (info["image_dim"], info["text_dim"]):
        raise ConfigError(f"{checkpoint} was trained on {info['image_dim']}-d image and {info['text_dim']}-d "
                          f"text features; {data.name} has {data.image_dim}-d and {data.text_dim}-d")
    metadata = read_metadata(Path(data_root) / data.name)
    log(f"encoding {len(rows)} {data.name}/{split} items with {checkpoint} "
        f"({info['bits']} bits, {protocol} protocol)")
    start = time.time()
    image_codes, text_codes = encode_packed(model, rows, protocol, batch_size)
    ids = np.asarray(rows.ids) if rows.ids is not None else np.arange(len(rows)).astype(str)
    mean_norm = lambda features: float(np.linalg.norm(np.asarray(features[:10000], np.float64), axis=1).mean())
    meta = {
        "checkpoint": str(Path(checkpoint).resolve()), "checkpoint_sha256": sha256_of(checkpoint),
        "bits": info["bits"], "scale": model.default_scale, "protocol": protocol, "dataset": data.name, "split": split,
        "data_root": str(Path(data_root).resolve()), "image_dim": info["image_dim"], "text_dim": info["text_dim"],
        "model": info["model"], "encoder": encoder_record(metadata, clip_model, clip_pretrained),
        # query features are scaled to these norms, so they look like the features the model saw
        "feature_norms": {"image": mean_norm(rows.image), "text": mean_norm(rows.text)},
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    known_captions, image_paths = item_details(Path(data_root) / data.name, rows)
    meta["image_root"] = image_root(image_paths)
    labelled = rows.label is not None
    index = CodeIndex(bits=info["bits"], ids=ids, meta=meta,
                      codes={"image": image_codes, "text": text_codes},
                      labels=np.asarray(rows.label).astype(np.uint8) if labelled else None,
                      label_names=label_names(metadata, rows.label.shape[1]) if labelled else None,
                      captions=read_captions(captions, ids) if captions else known_captions,
                      image_paths=image_paths)
    if kind != "flat":
        for modality in MODALITIES:
            store_approximate(index, modality, HammingSearcher(index.codes[modality], index.bits, kind))
    log(f"encoded and indexed in {time.time() - start:.1f} s")
    return index
