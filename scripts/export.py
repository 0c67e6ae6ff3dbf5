"""Export a checkpoint's image-side and text-side hash encoders as ONNX (or TorchScript) files.

    python scripts/export.py --checkpoint checkpoints/hash/demo_hash_64.pth                 # ONNX
    python scripts/export.py --checkpoint CKPT --out exported/demo64 --check 1000            # + onnxruntime check
    python scripts/export.py --checkpoint CKPT --format torchscript --bench 200             # + CPU latency

Writes <out>/image_encoder.onnx and <out>/text_encoder.onnx (default out: exported/<checkpoint
name>/). Each takes CLIP features (batch x feature size, float32) and gives `h`, the continuous
code tanh(scale * x) at the checkpoint's test-time scale, and `codes`, its signs (+1 where h >= 0,
else -1): what the checkpoint's encode_image / encode_text give (docs/search.md, "Exported
encoders"). The bits, scale, feature sizes, protocol and the checkpoint's sha256 are in each file's
metadata. scripts/search.py --encoder <out> queries an index with them, without the checkpoint.

--check N runs the first N items of the checkpoint's dataset (query split, then database; random
features where that data is not there) through the export and through PyTorch, prints per side how
many sign codes differ and the largest |h| among them, and exits 1 if any differs where |h| >= 1e-6.
--bench N prints each file's size and the median time of N batch-of-1 calls, export against PyTorch.
The library is hashindex/encoders.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from config import ConfigError  # noqa: E402
from data import DataError, load_dataset  # noqa: E402
from hashindex.encoders import (FORMATS, MODALITIES, SIGN_TOLERANCE, bench_export, check_export,  # noqa: E402
                                export_encoders)
from runio.checkpoint import load_trained_model  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a train_hash checkpoint (checkpoints/hash/<ds>_hash_<bits>.pth)")
    p.add_argument("--format", choices=tuple(FORMATS), default="onnx", help="onnx (default) or torchscript")
    p.add_argument("--out", default="", help="folder to write (default: exported/<checkpoint name>)")
    p.add_argument("--check", type=int, default=0, metavar="N",
                   help="compare the export's sign codes with PyTorch's on N items; exit 1 on a real difference")
    p.add_argument("--dataset", default="", help="with --check: items of this dataset (default: the checkpoint's)")
    p.add_argument("--data_root", default="", help="with --check: folder holding <dataset>/ (default: the checkpoint's)")
    p.add_argument("--bench", type=int, default=0, metavar="N",
                   help="median CPU time of N batch-of-1 calls per encoder, export against PyTorch")
    args = p.parse_args(argv)
    if args.check < 0 or args.bench < 0:
        p.error(f"--check and --bench take a count of at least 0, got {min(args.check, args.bench)}")
    return args


def check_items(checkpoint, info: dict, n: int, dataset: str, data_root: str) -> tuple:
    """(modality -> (n', D) float32 features, where they came from): the first n items of the query
    split then the database of the checkpoint's dataset (its facts: `info`) when its folder is there,
    else n random rows."""
    saved = info["config"]
    name, root = dataset or saved["dataset"], data_root or saved.get("data_root", "data")
    if (Path(root) / name).is_dir():   # never generate a missing demo set as a side effect
        data = load_dataset(name, root, saved.get("wiki_text", "lda"))
        if (data.image_dim, data.text_dim) != (info["image_dim"], info["text_dim"]):
            raise ConfigError(f"{checkpoint} takes {info['image_dim']}-d image and {info['text_dim']}-d text "
                              f"features; {data.name} has {data.image_dim}-d and {data.text_dim}-d")
        features = {}
        for modality in MODALITIES:
            parts = [np.asarray(getattr(split, modality)[:n], np.float32) for split in (data.query, data.retrieval)]
            features[modality] = np.concatenate(parts)[:n]
        return features, f"{len(features['image'])} items of {Path(root) / name} (query split, then database)"
    rng = np.random.default_rng(0)
    features = {m: rng.standard_normal((n, info[f"{m}_dim"])).astype(np.float32) for m in MODALITIES}
    return features, f"{n} random feature rows ({Path(root) / name} is not there)"


def main(argv=None) -> dict:
    """Export (and check, time); returns {"paths", "check", "bench"}. Bad input exits with status 2 and
    one line; a check that finds a sign difference where |h| >= 1e-6 exits with status 1."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out or Path("exported") / Path(args.checkpoint).stem)
    found = {"paths": {}, "check": None, "bench": None}
    try:
        model, info = load_trained_model(args.checkpoint, "cpu", log=lambda message: None)   # read once
        found["paths"] = paths = export_encoders(model, info, args.checkpoint, out, args.format)
        if args.check:
            features, source = check_items(args.checkpoint, info, args.check, args.dataset, args.data_root)
            found["check"] = check_export(model, paths, features)
        if args.bench:
            found["bench"] = bench_export(model, paths, args.bench)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    runtime = "onnxruntime" if args.format == "onnx" else "TorchScript"
    if found["bench"]:
        for modality, row in found["bench"].items():
            print(f"{modality} encoder: {row['mb']:.1f} MB; batch of 1, median of {args.bench} calls: "
                  f"{runtime} {row['export_ms']:.3f} ms, PyTorch {row['pytorch_ms']:.3f} ms")
    if found["check"]:
        print(f"check on {source}: {runtime} against PyTorch")
        for modality, row in found["check"].items():
            print(f"{modality} side: {row['differing']} differing signs (max |h| among them {row['max_abs_h']:.3g}); "
                  f"largest |h| difference {row['max_h_difference']:.3g}")
        beyond = sum(row["beyond_tolerance"] for row in found["check"].values())
        if beyond:
            print(f"error: {beyond} sign codes differ where |h| >= {SIGN_TOLERANCE:g}", file=sys.stderr)
            raise SystemExit(1)
    return found


if __name__ == "__main__":
    main()
