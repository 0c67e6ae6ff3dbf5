"""Images (and texts) per second of CLIP feature extraction.

    python scripts/bench_extract.py                  # 128 generated 500x375 JPEGs, ViT-B-32, CPU
    python scripts/bench_extract.py --device cuda --images 4096 --batch_size 256 --workers 8

Uses random weights (the speed does not depend on them) and JPEGs generated
into a temporary folder, so it needs no data and no download. Decoding and
preprocessing run in DataLoader workers, as in scripts/extract_features.py.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.clip_encoder import ClipEncoder  # noqa: E402
from data.extract import extract_features  # noqa: E402
from data.raw import RawDataset, RawItem  # noqa: E402
from runio.logs import add_log_flags, info, setup_logging  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--clip_model", default="ViT-B-32")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    add_log_flags(p)
    args = p.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    encoder = ClipEncoder(args.clip_model, "random", device=args.device)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)  # MIRFlickr-like photo size
        items = []
        for i in range(args.images):
            path = folder / f"im{i}.jpg"
            Image.fromarray(np.roll(base, i, axis=1)).save(path, quality=90)
            items.append(RawItem(f"im{i}", path, [f"a photo with tags sky clouds number {i}"], [0]))
        raw = RawDataset("bench", ["x"], items, str(folder))
        chunk = args.batch_size * max(1, -(-args.images // args.batch_size))
        # warm-up on one batch: model and allocator set-up are not extraction speed
        extract_features(RawDataset("warm", ["x"], items[:args.batch_size], ""), encoder, folder / "warm",
                         args.batch_size, 0, args.batch_size)
        start = time.perf_counter()
        extract_features(raw, encoder, folder / "work", args.batch_size, args.workers, chunk)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        texts_start = time.perf_counter()
        for s in range(0, len(items), args.batch_size):
            encoder.encode_texts([t for item in items[s:s + args.batch_size] for t in item.texts])
        text_seconds = time.perf_counter() - texts_start
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    info(f"{args.clip_model} on {device}, batch {args.batch_size}, {args.workers} workers, {args.images} images")
    info(f"pairs (image + text) per second: {args.images / seconds:.1f}  ({seconds:.1f} s)")
    info(f"texts alone per second:          {args.images / text_seconds:.1f}")


if __name__ == "__main__":
    main()
