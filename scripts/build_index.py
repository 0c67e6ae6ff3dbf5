"""Encode a database with a trained checkpoint into a code index file for scripts/search.py.

    python scripts/build_index.py --checkpoint checkpoints/hash/demo_hash_64.pth --out index/demo_64.npz
    python scripts/build_index.py --checkpoint ck.pth --dataset mirflickr --split retrieval --kind hnsw
    python scripts/build_index.py --checkpoint ck.pth --dataset my_features --clip_model ViT-B-32 \
        --clip_pretrained /models/vit_b_32.pt --captions captions.json

Every item of the split gets an image code and a text code (packed bits, bits/8
bytes each), under the `unimodal` protocol by default (image code from the image
alone, text code from the text alone: what a real search compares a query with)
or `paired` (UCMFH's: both from the pair). The file also holds the ids, labels
(and label names, captions when known) and metadata: the checkpoint and its
sha256, code length, protocol, model keys and the CLIP encoder that made the
features, which scripts/search.py needs for --text and --image queries.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hashindex.index_file import CodeIndex, IndexFileError, pack_codes, save_index  # noqa: E402
from config import ConfigError, resolve_device  # noqa: E402
from data import DataError, load_dataset  # noqa: E402
from data.clip_encoder import sha256_of  # noqa: E402
from hashindex.hamming_search import KINDS, FaissUnavailableError, HammingSearcher, store_approximate  # noqa: E402
from runio.checkpoint import load_trained_model  # noqa: E402

SPLITS = ("retrieval", "query", "train")
PROTOCOLS = ("unimodal", "paired")
MODALITIES = ("image", "text")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a train_hash checkpoint (checkpoints/hash/<ds>_hash_<bits>.pth)")
    p.add_argument("--out", default="", help="index file to write (default: index/<dataset>_<split>_<bits>bit.npz)")
    p.add_argument("--dataset", default="", help="dataset to encode (default: the one the checkpoint was trained on)")
    p.add_argument("--data_root", default="", help="folder holding <dataset>/ (default: the checkpoint's)")
    p.add_argument("--split", default="retrieval", choices=SPLITS, help="which split is the database")
    p.add_argument("--protocol", default="unimodal", choices=PROTOCOLS,
                   help="unimodal: codes from each side alone (real search); paired: from the pair (UCMFH)")
    p.add_argument("--kind", default="flat", choices=KINDS,
                   help="flat: exact search, nothing stored; hnsw/ivf: approximate FAISS index stored in the file")
    p.add_argument("--clip_model", default="", help="open_clip model that made the features (when the "
                                                    "dataset folder has no metadata.json saying so)")
    p.add_argument("--clip_pretrained", default="", help="its weights: a local file, a cached tag, or random")
    p.add_argument("--captions", default="", help="JSON file: {id: caption} or a list with one caption per row")
    p.add_argument("--batch_size", type=int, default=1024, help="rows per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    return p.parse_args(argv)


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


def build(args, log=print) -> CodeIndex:
    device = resolve_device(args.device)
    model, info = load_trained_model(args.checkpoint, device, log)
    saved = info["config"]
    dataset = args.dataset or saved["dataset"]
    data_root = args.data_root or saved.get("data_root", "data")
    data = load_dataset(dataset, data_root, saved.get("wiki_text", "lda"))
    split = getattr(data, args.split)
    if (data.image_dim, data.text_dim) != (info["image_dim"], info["text_dim"]):
        raise ConfigError(f"{args.checkpoint} was trained on {info['image_dim']}-d image and {info['text_dim']}-d "
                          f"text features; {data.name} has {data.image_dim}-d and {data.text_dim}-d")
    metadata = read_metadata(Path(data_root) / data.name)
    log(f"encoding {len(split)} {data.name}/{args.split} items with {args.checkpoint} "
        f"({info['bits']} bits, {args.protocol} protocol)")
    start = time.time()
    image_codes, text_codes = model.encode_split(split, args.protocol, args.batch_size)
    ids = split.ids if split.ids is not None else np.arange(len(split)).astype(str)
    mean_norm = lambda features: float(np.linalg.norm(np.asarray(features[:10000], np.float64), axis=1).mean())
    meta = {
        "checkpoint": str(Path(args.checkpoint).resolve()), "checkpoint_sha256": sha256_of(args.checkpoint),
        "bits": info["bits"], "protocol": args.protocol, "dataset": data.name, "split": args.split,
        "data_root": str(Path(data_root).resolve()), "image_dim": info["image_dim"], "text_dim": info["text_dim"],
        "model": info["model"], "encoder": encoder_record(metadata, args.clip_model, args.clip_pretrained),
        # query features are scaled to these norms, so they look like the features the model saw
        "feature_norms": {"image": mean_norm(split.image), "text": mean_norm(split.text)},
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    index = CodeIndex(bits=info["bits"], ids=ids, meta=meta,
                      codes={"image": pack_codes(image_codes), "text": pack_codes(text_codes)},
                      labels=np.asarray(split.label).astype(np.uint8),
                      label_names=label_names(metadata, split.label.shape[1]),
                      captions=read_captions(args.captions, ids))
    if args.kind != "flat":
        for modality in MODALITIES:
            store_approximate(index, modality, HammingSearcher(index.codes[modality], index.bits, args.kind))
    log(f"encoded and indexed in {time.time() - start:.1f} s")
    return index


def main(argv=None) -> Path:
    """Build and write the index; returns its path. Bad input exits with status 2 and one line."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        torch.manual_seed(0)
        index = build(args)
        out = Path(args.out or f"index/{index.meta['dataset']}_{args.split}_{index.bits}bit.npz")
        save_index(out, index)
    except (ConfigError, DataError, IndexFileError, FaissUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    size = out.stat().st_size
    print(f"wrote {out}: {index.size} items, {index.bits} bits, {index.meta['protocol']} protocol, "
          f"{args.kind} search, {size / 1e6:.2f} MB ({size / max(index.size, 1):.1f} bytes per item)")
    return out


if __name__ == "__main__":
    main()
