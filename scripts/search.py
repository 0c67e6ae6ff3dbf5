"""Cross-modal search over a code index built by scripts/build_index.py.

    python scripts/search.py --index index/demo_retrieval_64bit.npz --query_id 0
    python scripts/search.py --index INDEX --text "a dog on the beach"          # text -> images
    python scripts/search.py --index INDEX --image photo.jpg --top_k 20         # image -> texts
    python scripts/search.py --index INDEX --query_id 17 --query_modality text --json

A --text or --image query goes through open_clip (the model and weights the
index records) and then the trained checkpoint's encode_text / encode_image;
a --query_id query uses that item's stored code. Results are the index items
nearest in Hamming distance on the other modality (--target to choose), ties
in index order; ids, distances, labels and captions when the index has them.
The library is hashindex/query.py.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from config import ConfigError  # noqa: E402
from data import DataError  # noqa: E402
from hashindex.hamming_search import KINDS, FaissUnavailableError  # noqa: E402
from hashindex.index_file import IndexFileError  # noqa: E402
from hashindex.query import MODALITIES, Query, format_results, search  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True, help="a code index file from scripts/build_index.py")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a text query")
    query.add_argument("--image", help="an image file as the query")
    query.add_argument("--query_id", help="the id of an index item as the query (its stored code)")
    p.add_argument("--query_modality", choices=MODALITIES, default="image",
                   help="with --query_id: use the item's image code (default) or its text code")
    p.add_argument("--target", choices=MODALITIES, default=None,
                   help="modality searched (default: the other one than the query's)")
    p.add_argument("--top_k", type=int, default=10, help="number of results")
    p.add_argument("--checkpoint", default="", help="checkpoint for --text/--image (default: the index's)")
    p.add_argument("--kind", choices=KINDS, default=None,
                   help="flat = exact; hnsw/ivf = the approximate index stored in the file (default: as built)")
    p.add_argument("--backend", choices=("auto", "faiss", "numpy"), default="auto",
                   help="auto = FAISS when installed, else numpy popcount (exact only)")
    p.add_argument("--device", default="cpu", help="device for the query encoders")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    if args.top_k < 1:
        p.error(f"--top_k must be at least 1, got {args.top_k}")
    return args


def main(argv=None) -> dict:
    """Command-line entry point; returns the results. Bad input exits with status 2 and one line."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    query = Query(text=args.text, image=args.image, item_id=args.query_id, item_modality=args.query_modality,
                  checkpoint=args.checkpoint, device=args.device)
    try:
        found = search(args.index, query, args.top_k, args.target, args.kind, args.backend)
    except (ConfigError, DataError, IndexFileError, FaissUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(found, indent=2) if args.json else format_results(found))
    return found


if __name__ == "__main__":
    main()
