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
features, which scripts/search.py needs for --text and --image queries. The library is
hashindex/build.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config import ConfigError  # noqa: E402
from data import DataError  # noqa: E402
from hashindex.build import SPLITS, build_index  # noqa: E402
from hashindex.hamming_search import KINDS, FaissUnavailableError  # noqa: E402
from hashindex.index_file import IndexFileError, save_index  # noqa: E402
from model import PROTOCOLS  # noqa: E402
from runio.logs import LOGGER, add_log_flags, info, setup_logging  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0],
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
    add_log_flags(p)
    return p.parse_args(argv)


def main(argv=None) -> Path:
    """Build and write the index; returns its path. Bad input exits with status 2 and one line."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.quiet, args.verbose)
    LOGGER.debug("arguments: %s", vars(args))
    try:
        torch.manual_seed(0)
        index = build_index(args.checkpoint, args.dataset, args.data_root, args.split, args.protocol, args.kind,
                            args.clip_model, args.clip_pretrained, args.captions, args.batch_size, args.device, info)
        out = Path(args.out or f"index/{index.meta['dataset']}_{args.split}_{index.bits}bit.npz")
        save_index(out, index)
    except (ConfigError, DataError, IndexFileError, FaissUnavailableError) as err:
        LOGGER.error(f"error: {err}")
        raise SystemExit(2) from None
    size = out.stat().st_size
    info(f"wrote {out}: {index.size} items, {index.bits} bits, {index.meta['protocol']} protocol, "
         f"{args.kind} search, {size / 1e6:.2f} MB ({size / max(index.size, 1):.1f} bytes per item)")
    return out


if __name__ == "__main__":
    main()
