"""Cross-modal search over a code index built by scripts/build_index.py, or its web page.

    python scripts/search.py --index index/demo_retrieval_64bit.npz --query_id 0
    python scripts/search.py --index INDEX --text "a dog on the beach"          # text -> images
    python scripts/search.py --index INDEX --image photo.jpg --top_k 20         # image -> texts
    python scripts/search.py --index INDEX --query_id 17 --query_modality text --json
    python scripts/search.py --index INDEX --serve [--port 8000]                # the search page

A --text or --image query goes through open_clip (the model and weights the
index records) and then the trained checkpoint's encode_text / encode_image
(or, with --encoder FOLDER, the same encoders exported by scripts/export.py);
a --query_id query uses that item's stored code. Results are the index items
nearest in Hamming distance on the other modality (--target to choose), ties
in index order; ids, distances, labels and captions when the index has them.
--serve starts a local web server (127.0.0.1 by default) with a search page
and a JSON API over the same search (docs/search-page.md). The libraries are
hashindex/query.py and webui/.
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
from hashindex.index_file import IndexFileError, load_index  # noqa: E402
from hashindex.query import MODALITIES, Query, SearchEngine, format_results, search  # noqa: E402

ERRORS = (ConfigError, DataError, IndexFileError, FaissUnavailableError)


def parse_args(argv):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True, help="a code index file from scripts/build_index.py")
    query = p.add_mutually_exclusive_group()
    query.add_argument("--text", help="a text query")
    query.add_argument("--image", help="an image file as the query")
    query.add_argument("--query_id", help="the id of an index item as the query (its stored code)")
    p.add_argument("--query_modality", choices=MODALITIES, default="image",
                   help="with --query_id: use the item's image code (default) or its text code")
    p.add_argument("--target", choices=MODALITIES, default=None,
                   help="modality searched (default: the other one than the query's)")
    p.add_argument("--top_k", type=int, default=10, help="number of results")
    p.add_argument("--checkpoint", default="", help="checkpoint for --text/--image (default: the index's)")
    p.add_argument("--encoder", default="",
                   help="for --text/--image: a folder of encoders from scripts/export.py, run by onnxruntime "
                        "instead of the checkpoint (which is then not needed)")
    p.add_argument("--kind", choices=KINDS, default=None,
                   help="flat = exact; hnsw/ivf = the approximate index stored in the file (default: as built)")
    p.add_argument("--backend", choices=("auto", "faiss", "numpy"), default="auto",
                   help="auto = FAISS when installed, else numpy popcount (exact only)")
    p.add_argument("--device", default="cpu", help="device for the query encoders")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    serve = p.add_argument_group("the search page (--serve)")
    serve.add_argument("--serve", action="store_true", help="start the search page and its JSON API instead")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to "
                            "the network, with no authentication)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--allow_host", action="append", default=[], metavar="NAME",
                       help="a name the page is reached by besides localhost and --host (repeatable; e.g. this "
                            "machine's name with --host 0.0.0.0): requests naming any other host are refused")
    serve.add_argument("--max_upload_mb", type=float, default=10, help="largest image upload in MB (default 10)")
    serve.add_argument("--max_k", type=int, default=1000, help="largest k a request may ask for (default 1000)")
    args = p.parse_args(argv)
    asked = [flag for flag, value in (("--text", args.text), ("--image", args.image), ("--query_id", args.query_id))
             if value is not None]
    if args.serve and asked:
        p.error(f"--serve takes no {asked[0]}: queries come from the page")
    if not args.serve and not asked:
        p.error("give a query (--text, --image or --query_id), or --serve for the search page")
    if args.top_k < 1:
        p.error(f"--top_k must be at least 1, got {args.top_k}")
    if args.max_k < 1 or args.max_upload_mb <= 0 or not 0 <= args.port <= 65535:
        p.error("--max_k must be at least 1, --max_upload_mb above 0, --port in 0-65535")
    return args


def fail(err) -> None:
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(2) from None


def serve(args) -> None:
    """Load the index, its searchers and query encoders once, then serve until Ctrl-C; an unreadable
    index stops here with one line, before any server starts."""
    import uvicorn

    from webui.app import create_app

    try:
        engine = SearchEngine(load_index(args.index), args.index, args.kind, args.backend, args.checkpoint,
                              args.device, args.encoder)
        app = create_app(engine, max_k=args.max_k, max_upload_bytes=int(args.max_upload_mb * 2**20),
                         hosts=[args.host, *args.allow_host])
    except ERRORS as err:
        fail(err)
    except ValueError as err:   # an index that loads but cannot be searched (duplicate ids)
        fail(f"{args.index}: {err}")
    print(f"serving {args.index} ({engine.index.size} items) on http://{args.host}:{args.port}/ (Ctrl-C stops)")
    if app.state.disabled_reason:
        print(f"text and image queries are off (queries by id work): {app.state.disabled_reason}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def main(argv=None) -> dict | None:
    """Command-line entry point; returns the results (None after --serve). Bad input exits with status 2
    and one line."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve:
        return serve(args)
    query = Query(text=args.text, image=args.image, item_id=args.query_id, item_modality=args.query_modality,
                  checkpoint=args.checkpoint, device=args.device, encoder=args.encoder)
    try:
        found = search(args.index, query, args.top_k, args.target, args.kind, args.backend)
    except ERRORS as err:
        fail(err)
    print(json.dumps(found, indent=2) if args.json else format_results(found))
    return found


if __name__ == "__main__":
    main()
