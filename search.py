"""Cross-modal search over a code index built by scripts/build_index.py.

    python search.py --index index/demo_retrieval_64bit.npz --query_id 0
    python search.py --index INDEX --text "a dog on the beach"          # text -> images
    python search.py --index INDEX --image photo.jpg --top_k 20         # image -> texts
    python search.py --index INDEX --query_id 17 --query_modality text --json

A --text or --image query goes through open_clip (the model and weights the
index records) and then the trained checkpoint's encode_text / encode_image;
a --query_id query uses that item's stored code. Results are the index items
nearest in Hamming distance on the other modality (--target to choose), ties
in index order; ids, distances, labels and captions when the index has them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from code_index import CodeIndex, IndexFileError, load_index, pack_codes
from config import ConfigError
from data import DataError
from data.clip_encoder import sha256_of
from hamming_search import KINDS, FaissUnavailableError, make_searcher
from trained_model import load_trained_model

MODALITIES = ("image", "text")
OTHER = {"image": "text", "text": "image"}


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


def load_query_model(index: CodeIndex, index_path, checkpoint: str, device):
    """The checkpoint the index was built with (or `checkpoint`), checked against the index:
    same code length, same model keys, same file contents."""
    path = Path(checkpoint or index.meta.get("checkpoint", ""))
    if not str(path) or not path.is_file():
        raise ConfigError(f"{index_path}: its checkpoint {str(path) or '(none recorded)'} is not there; "
                          f"pass --checkpoint FILE (the one the index was built with)")
    model, info = load_trained_model(path, device, log=lambda message: None)
    if info["bits"] != index.bits:
        raise ConfigError(f"{path} makes {info['bits']}-bit codes but {index_path} holds {index.bits}-bit codes; "
                          f"pass the checkpoint the index was built with, or rebuild the index")
    recorded = index.meta.get("model", {})
    differing = sorted(k for k in recorded if recorded[k] != info["model"].get(k))
    dims = (index.meta.get("image_dim"), index.meta.get("text_dim"))
    if differing or dims != (info["image_dim"], info["text_dim"]):
        shown = ", ".join(f"{k} {info['model'].get(k)} vs {recorded[k]}" for k in differing) or \
            f"input sizes {info['image_dim']}/{info['text_dim']} vs {dims[0]}/{dims[1]}"
        raise ConfigError(f"{path} is not the model {index_path} was built with ({shown}); "
                          f"rebuild the index with this checkpoint")
    if index.meta.get("checkpoint_sha256") and sha256_of(path) != index.meta["checkpoint_sha256"]:
        raise ConfigError(f"{path} differs from the checkpoint {index_path} was built with (sha256 mismatch: "
                          f"retrained or changed since); rebuild the index with scripts/build_index.py")
    return model


def clip_features(index: CodeIndex, index_path, text: str | None, image: str | None, device):
    """(1, D) unit-length open_clip features of the query, from the encoder the index records."""
    from data.clip_encoder import ClipEncoder

    record = index.meta.get("encoder")
    if not record:
        raise ConfigError(f"{index_path} records no CLIP encoder (its features were not extracted by this "
                          f"framework); rebuild it with --clip_model and --clip_pretrained, or use --query_id")
    torch.manual_seed(0)  # "random" weights (smoke tests) are then the same on every call
    encoder = ClipEncoder(record["clip_model"], record.get("weights_file") or record["pretrained"],
                          device=device)
    wanted, got = record.get("weights_sha256"), encoder.metadata.get("weights_sha256")
    if wanted and got and wanted != got:
        raise ConfigError(f"{index_path}: the CLIP weights {encoder.metadata['weights_file']} are not the ones "
                          f"the features were made with (sha256 mismatch)")
    if text is not None:
        return encoder.encode_texts([text])
    from PIL import Image

    try:
        with Image.open(image) as picture:
            pixels = encoder.preprocess(picture.convert("RGB")).unsqueeze(0)
    except FileNotFoundError:
        raise DataError(f"--image {image}: file not found") from None
    except Exception as err:
        raise DataError(f"--image {image}: not a readable image ({type(err).__name__})") from None
    return encoder.encode_images(pixels)


@torch.no_grad()
def query_code(args, index: CodeIndex) -> tuple:
    """(1, W) packed query code and the query's modality."""
    if args.query_id is not None:
        try:
            row = index.row_of(args.query_id)
        except KeyError as err:
            raise ConfigError(f"--query_id: {err.args[0]}") from None
        return index.codes[args.query_modality][row:row + 1], args.query_modality
    modality = "text" if args.text is not None else "image"
    device = torch.device(args.device)
    model = load_query_model(index, args.index, args.checkpoint, device)
    features = clip_features(index, args.index, args.text, args.image, device)       # (1, D)
    dim = index.meta[f"{modality}_dim"]
    if features.shape[1] != dim:
        raise ConfigError(f"{index.meta['encoder']['clip_model']} gives {features.shape[1]}-d features but the "
                          f"model takes {dim}-d {modality} features")
    norm = index.meta.get("feature_norms", {}).get(modality, 1.0)
    features = torch.from_numpy(features).to(device) * norm
    encode = model.encode_text if modality == "text" else model.encode_image
    return pack_codes(encode(features)), modality


def search(args) -> dict:
    index = load_index(args.index)
    code, modality = query_code(args, index)                       # (1, bits/8) uint8
    target = args.target or OTHER[modality]
    searcher = make_searcher(index, target, args.kind, args.backend)
    distances, rows = searcher.search(code, args.top_k)
    label_names = None
    if index.labels is not None:
        label_names = index.label_names or [f"label {c}" for c in range(index.labels.shape[1])]
    labels_of = lambda row: [label_names[c] for c in np.flatnonzero(index.labels[row])]
    results = []
    for rank, (distance, row) in enumerate(zip(distances[0].tolist(), rows[0].tolist()), start=1):
        if row < 0:  # an approximate search found fewer than k
            break
        item = {"rank": rank, "id": str(index.ids[row]), "row": row, "distance": distance}
        if label_names is not None:
            item["labels"] = labels_of(row)
        if index.captions is not None:
            item["caption"] = str(index.captions[row])
        results.append(item)
    query = {"modality": modality, "code": code[0].tobytes().hex()}
    if args.query_id is not None:
        query["id"] = args.query_id
        if label_names is not None:
            query["labels"] = labels_of(index.row_of(args.query_id))
    else:
        query.update({"text": args.text} if args.text is not None else {"image": args.image})
    return {"index": str(args.index), "bits": index.bits, "protocol": index.meta.get("protocol"),
            "query": query, "target": target, "search": searcher.describe(), "results": results}


def format_results(found: dict) -> str:
    query = found["query"]
    if "id" in query:
        said = f"item {query['id']}" + (f" [{', '.join(query['labels'])}]" if query.get("labels") else "")
    else:
        said = repr(query.get("text") or query.get("image"))
    lines = [f"{query['modality']} query {said} -> {found['target']}s in {found['index']} "
             f"({found['bits']} bits, {found['protocol']} codes, {found['search']['kind']} search)"]
    width = max([len(r["id"]) for r in found["results"]] + [2])
    lines.append(f"{'rank':>4}  {'id':<{width}}  {'distance':>8}  labels / caption")
    for r in found["results"]:
        extra = ", ".join(r.get("labels", []))
        if r.get("caption"):
            extra = (extra + " | " if extra else "") + r["caption"]
        lines.append(f"{r['rank']:>4}  {r['id']:<{width}}  {r['distance']:>8}  {extra}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    """Command-line entry point; returns the results. Bad input exits with status 2 and one line."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        found = search(args)
    except (ConfigError, DataError, IndexFileError, FaissUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(found, indent=2) if args.json else format_results(found))
    return found


if __name__ == "__main__":
    main()
