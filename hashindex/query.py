"""The query side of a code index: the library behind scripts/search.py.

A text or an image query goes through open_clip (the model and weights the
index records) and then the trained checkpoint's encode_text / encode_image; an
item-id query uses that item's stored code. Results are the index items nearest
in Hamming distance on the other modality (or `target`), ties in index order,
with ids, distances, labels and captions when the index has them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from config import ConfigError
from data import DataError
from data.clip_encoder import sha256_of
from hashindex.hamming_search import make_searcher
from hashindex.index_file import CodeIndex, load_index, pack_codes
from runio.checkpoint import load_trained_model

MODALITIES = ("image", "text")
OTHER = {"image": "text", "text": "image"}


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


@dataclass
class Query:
    """One query: a text, an image file, or the stored code of an index item (its image code or its
    text code); `checkpoint` and `device` serve text and image queries."""
    text: str | None = None
    image: str | None = None
    item_id: str | None = None
    item_modality: str = "image"
    checkpoint: str = ""
    device: str = "cpu"


@torch.no_grad()
def query_code(index: CodeIndex, index_path, query: Query) -> tuple:
    """(1, W) packed query code and the query's modality."""
    if query.item_id is not None:
        try:
            row = index.row_of(query.item_id)
        except KeyError as err:
            raise ConfigError(f"--query_id: {err.args[0]}") from None
        return index.codes[query.item_modality][row:row + 1], query.item_modality
    modality = "text" if query.text is not None else "image"
    device = torch.device(query.device)
    model = load_query_model(index, index_path, query.checkpoint, device)
    features = clip_features(index, index_path, query.text, query.image, device)       # (1, D)
    dim = index.meta[f"{modality}_dim"]
    if features.shape[1] != dim:
        raise ConfigError(f"{index.meta['encoder']['clip_model']} gives {features.shape[1]}-d features but the "
                          f"model takes {dim}-d {modality} features")
    norm = index.meta.get("feature_norms", {}).get(modality, 1.0)
    features = torch.from_numpy(features).to(device) * norm
    encode = model.encode_text if modality == "text" else model.encode_image
    return pack_codes(encode(features)), modality


def search(index_path, query: Query, top_k: int = 10, target: str | None = None, kind: str | None = None,
           backend: str = "auto") -> dict:
    """The top_k items of the index at `index_path` nearest to `query` on the `target` modality
    (default: the other one), with the query, the search used and the index's facts."""
    index = load_index(index_path)
    code, modality = query_code(index, index_path, query)          # (1, bits/8) uint8
    target = target or OTHER[modality]
    searcher = make_searcher(index, target, kind, backend)
    distances, rows = searcher.search(code, top_k)
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
    asked = {"modality": modality, "code": code[0].tobytes().hex()}
    if query.item_id is not None:
        asked["id"] = query.item_id
        if label_names is not None:
            asked["labels"] = labels_of(index.row_of(query.item_id))
    else:
        asked.update({"text": query.text} if query.text is not None else {"image": query.image})
    return {"index": str(index_path), "bits": index.bits, "protocol": index.meta.get("protocol"),
            "query": asked, "target": target, "search": searcher.describe(), "results": results}


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
