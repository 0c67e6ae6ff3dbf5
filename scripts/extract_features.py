"""Encode raw images and texts with open_clip into UCMFH's feature layout.

    # your own pairs: a CSV (image,text,labels[,id]) or JSON-lines manifest
    python scripts/extract_features.py --manifest pairs.csv --name mypairs --pretrained ViT-B-32.pt
    # a public raw release, laid out as docs/data.md ("Raw layouts") describes
    python scripts/extract_features.py --dataset mirflickr --raw_root /data/mirflickr25k --pretrained openai
    # on N processes (GPUs, or CPU processes with --device cpu), each resumable on its own
    torchrun --nproc_per_node N scripts/extract_features.py --manifest pairs.csv --name mypairs --pretrained ...
    # then
    python train.py --dataset mypairs

Writes <data_root>/<name>/{train,query,retrieval}.pkl (and .h5 with --format h5|both),
splits.json, metadata.json and extraction_report.json. Weights: a local checkpoint
file, or an open_clip tag already in the local cache; nothing is downloaded without
--allow_download. Interrupted runs resume from <output>/.work/ when started again.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import DataError, canonical_dataset_name  # noqa: E402
from data.clip_encoder import ClipEncoder  # noqa: E402
from data.export import DTYPES, FORMATS, write_feature_dataset  # noqa: E402
from data.extract import TEXT_MODES, extract_features  # noqa: E402
from data.raw import PREPARERS, SPLIT_SIZES, make_splits, read_manifest  # noqa: E402
from parallel import barrier, init_from_env, shutdown  # noqa: E402
from runio.logs import LOGGER, add_log_flags, info, setup_logging  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="CSV or JSON-lines file: image, text, labels (names or indices), id")
    source.add_argument("--dataset", help=f"a public raw release: {', '.join(PREPARERS)} (aliases flickr, nus, coco)")
    p.add_argument("--raw_root", help="folder of the raw release (with --dataset)")
    p.add_argument("--image_root", help="base folder of the manifest's relative image paths (default: its folder)")
    p.add_argument("--name", help="output dataset name (default: --dataset, or the manifest's file name)")
    p.add_argument("--data_root", default="data", help="outputs go to <data_root>/<name>/ (default: data)")
    p.add_argument("--output", help="output folder (overrides <data_root>/<name>)")
    p.add_argument("--clip_model", default="ViT-B-32",
                   help="open_clip model name, or a model config file in open_clip's JSON format (default: ViT-B-32)")
    p.add_argument("--pretrained", help="local checkpoint file, or a cached open_clip tag; 'random' for a smoke test")
    p.add_argument("--allow_download", action="store_true", help="let open_clip download the tag's weights")
    p.add_argument("--cache_dir", help="open_clip's weight cache (default: its own)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="DataLoader processes that decode images (default: 2)")
    p.add_argument("--chunk_size", type=int, default=1024, help="items per resumable chunk (multiple of batch_size)")
    p.add_argument("--text_mode", default="mean", choices=TEXT_MODES,
                   help="several texts per pair (COCO captions): mean of their features (default) or the first")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="storage type of the features")
    p.add_argument("--format", default="pkl", choices=FORMATS, help="pkl (UCMFH's), h5, or both")
    p.add_argument("--num_query", type=int, help="query pairs (default: the literature's, or 10%% of a manifest)")
    p.add_argument("--num_train", type=int, help="training pairs drawn from the database (default: the literature's)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    p.add_argument("--min_tag_count", type=int, default=20, help="mirflickr: keep tags used by this many images")
    p.add_argument("--keep_work", action="store_true", help="keep the per-chunk work folder after success")
    add_log_flags(p)
    return p.parse_args(argv)


def load_raw(args):
    if args.manifest:
        return read_manifest(args.manifest, image_root=args.image_root), Path(args.manifest).stem
    name = canonical_dataset_name(args.dataset)
    if name not in PREPARERS:
        raise DataError(f"--dataset {args.dataset!r}: no raw preparer; choose one of {', '.join(PREPARERS)}")
    if not args.raw_root:
        raise DataError(f"--dataset {name} needs --raw_root, the folder of the raw release")
    options = {"min_tag_count": args.min_tag_count} if name == "mirflickr" else {}
    return PREPARERS[name](args.raw_root, **options), name


def split_sizes(args, name, kept):
    default = SPLIT_SIZES.get(name) if not args.manifest else None
    num_query = args.num_query or (default["query"] if default else max(1, min(2000, round(0.1 * kept))))
    num_train = args.num_train or (default["train"] if default else min(5000, kept - num_query))
    return num_query, num_train


def main(argv=None) -> Path:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.quiet, args.verbose)       # under torchrun rank 0 alone prints
    LOGGER.debug("arguments: %s", vars(args))
    try:
        raw, default_name = load_raw(args)
        name = args.name or default_name
        out_dir = Path(args.output) if args.output else Path(args.data_root) / name
        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        ranks = init_from_env(device)             # torchrun: each process encodes its share of the chunks
        if ranks.distributed and device.startswith("cuda"):
            device = f"cuda:{ranks.local_rank}"
        encoder = ClipEncoder(args.clip_model, args.pretrained, args.allow_download, device, args.cache_dir)
        info(f"{raw.source}: {len(raw)} pairs, {len(raw.label_names)} labels -> {out_dir}"
            + (f" ({ranks.world_size} processes)" if ranks.distributed else ""))
        start = time.time()
        features = extract_features(raw, encoder, out_dir / ".work", args.batch_size, args.workers,
                                    args.chunk_size, args.text_mode, share=(ranks.rank, ranks.world_size),
                                    barrier=lambda: barrier(ranks))
        if not ranks.main:                        # rank 0 writes the dataset
            return out_dir
        seconds = time.time() - start
        kept = int(features.ok.sum())
        num_query, num_train = split_sizes(args, name, kept)
        splits = make_splits(kept, num_query, num_train, args.seed)
        metadata = {**encoder.metadata, "dataset": name, "source": raw.source, "label_names": raw.label_names,
                    "text_mode": args.text_mode, "dtype": args.dtype, "split_seed": args.seed,
                    "date": features.started, "items": len(raw), "kept": kept}
        sizes = write_feature_dataset(out_dir, raw, features, splits, metadata, args.format, args.dtype)
    except DataError as err:
        LOGGER.error(f"error: {err}")
        raise SystemExit(2) from None
    finally:
        shutdown()
    if not args.keep_work:
        shutil.rmtree(out_dir / ".work", ignore_errors=True)
    skipped = len(raw) - kept
    info(f"{kept} pairs kept, {skipped} skipped (see {out_dir / 'extraction_report.json'}); "
         f"query {sizes['query']}, retrieval {sizes['retrieval']}, train {sizes['train']}")
    root = "" if out_dir.parent == Path("data") else f" --data_root {out_dir.parent}"
    info(f"{len(raw) / max(seconds, 1e-9):.1f} items/s on {device}; train with: "
         f"python train.py --dataset {out_dir.name}{root}")
    return out_dir


if __name__ == "__main__":
    main()
