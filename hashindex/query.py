"""The query side of a code index: the library behind scripts/search.py and its web page (webui/).

A text or an image query goes through open_clip (the model and weights the
index records) and then the trained checkpoint's encode_text / encode_image, or
the same encoders exported by scripts/export.py (`encoder`: a folder of ONNX
files, run by onnxruntime; the checkpoint is then not loaded); an item-id query
uses that item's stored code. Results are the index items nearest
in Hamming distance on the other modality (or `target`), ties in index order,
with ids, distances, labels and captions when the index has them.

`SearchEngine` holds a loaded index for many queries (the server keeps one);
`search()` runs one query from the command line through it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from config import ConfigError
from data import DataError
from data.clip_encoder import sha256_of
from hashindex.encoders import ExportedEncoders
from hashindex.hamming_search import make_searcher
from hashindex.index_file import CodeIndex, load_index, pack_codes
from runio.checkpoint import load_trained_model

MODALITIES = ("image", "text")
OTHER = {"image": "text", "text": "image"}


def load_query_model(index: CodeIndex, index_path, checkpoint: str, device):
    """The checkpoint the index was built with (or `checkpoint`), checked against the index:
    same code length, same model keys, same file contents."""
    path = checkpoint or index.meta.get("checkpoint", "")
    if not path or not Path(path).is_file():
        raise ConfigError(f"{index_path}: its checkpoint {path or '(none recorded)'} is not there; "
                          f"pass --checkpoint FILE (the one the index was built with)")
    path = Path(path)
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


def load_clip_encoder(index: CodeIndex, index_path, device):
    """The open_clip encoder the index records (random weights are drawn from seed 0 by ClipEncoder,
    so they are the ones the features were made with)."""
    from data.clip_encoder import ClipEncoder

    record = index.meta.get("encoder")
    if not record:
        raise ConfigError(f"{index_path} records no CLIP encoder (its features were not extracted by this "
                          f"framework); rebuild it with --clip_model and --clip_pretrained, or query by id")
    encoder = ClipEncoder(record["clip_model"], record.get("weights_file") or record["pretrained"],
                          device=device)
    wanted, got = record.get("weights_sha256"), encoder.metadata.get("weights_sha256")
    if wanted and got and wanted != got:
        raise ConfigError(f"{index_path}: the CLIP weights {encoder.metadata['weights_file']} are not the ones "
                          f"the features were made with (sha256 mismatch)")
    return encoder


def decode_image(source, name: str, max_pixels: int | None = None):
    """An RGB PIL image from a file path or a binary file object; DataError naming `name` otherwise
    (a server passes max_pixels so a small file cannot decode into gigabytes)."""
    from PIL import Image

    try:
        with Image.open(source) as picture:
            if max_pixels and picture.width * picture.height > max_pixels:
                raise DataError(f"{name}: {picture.width}x{picture.height} pixels is over the limit of "
                                f"{max_pixels / 1e6:g} megapixels")
            return picture.convert("RGB")
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except Exception as err:   # PIL raises many kinds for a truncated or foreign file
        raise DataError(f"{name}: not a readable image ({type(err).__name__})") from None


class SearchEngine:
    """A loaded index ready for many queries: the id -> row map and one searcher per target modality
    are built once, and the query encoders (the checkpoint, or the exported encoders in the folder
    `encoder`, and open_clip) are loaded once, on first use."""

    def __init__(self, index: CodeIndex, index_path, kind: str | None = None, backend: str = "auto",
                 checkpoint: str = "", device: str = "cpu", encoder: str = ""):
        self.index, self.index_path = index, index_path
        self.kind, self.backend = kind, backend
        self.checkpoint, self.device, self.encoder = checkpoint, torch.device(device), encoder
        self._searchers, self._encoders = {}, None
        self._lock = threading.Lock()   # a server's worker threads share the engine
        self.label_names = None
        if index.labels is not None:
            self.label_names = index.label_names or [f"label {c}" for c in range(index.labels.shape[1])]

    def prepare(self) -> None:
        """Build the id -> row map and every modality's searcher now, not on the first query."""
        if self.index.size:
            self.index.row_of(self.index.ids[0])
        for modality in self.index.codes:
            self.searcher(modality)

    def searcher(self, target: str):
        with self._lock:
            if target not in self._searchers:
                self._searchers[target] = make_searcher(self.index, target, self.kind, self.backend)
            return self._searchers[target]

    def encoders(self) -> tuple:
        """(checkpoint model or ExportedEncoders, open_clip encoder); ConfigError or DataError say why
        they cannot load."""
        with self._lock:
            if self._encoders is None:
                # the encoder first: an index of features of unknown origin says so, whatever its checkpoint
                encoder = load_clip_encoder(self.index, self.index_path, self.device)
                if self.encoder:
                    model = ExportedEncoders(self.encoder)
                    model.check_fits(self.index.meta, self.index_path)
                else:
                    model = load_query_model(self.index, self.index_path, self.checkpoint, self.device)
                self._encoders = model, encoder
            return self._encoders

    def item_code(self, item_id: str, modality: str) -> np.ndarray:
        """(1, W) stored code of an item; KeyError with a one-line message for an unknown id."""
        row = self.index.row_of(item_id)
        return self.index.codes[modality][row:row + 1]

    @torch.no_grad()
    def text_code(self, text: str) -> np.ndarray:
        return self._encode("text", self.encoders()[1].encode_texts([text]))

    @torch.no_grad()
    def image_code(self, picture) -> np.ndarray:
        """(1, W) code of an RGB PIL image."""
        encoder = self.encoders()[1]
        return self._encode("image", encoder.encode_images(encoder.preprocess(picture).unsqueeze(0)))

    def _encode(self, modality: str, features: np.ndarray) -> np.ndarray:
        model = self.encoders()[0]
        dim = self.index.meta[f"{modality}_dim"]
        if features.shape[1] != dim:
            raise ConfigError(f"{self.index.meta['encoder']['clip_model']} gives {features.shape[1]}-d features "
                              f"but the model takes {dim}-d {modality} features")
        norm = self.index.meta.get("feature_norms", {}).get(modality, 1.0)
        features = torch.from_numpy(features).to(self.device) * norm
        encode = model.encode_text if modality == "text" else model.encode_image
        return pack_codes(encode(features))

    def labels_of(self, row: int) -> list:
        return [self.label_names[c] for c in np.flatnonzero(self.index.labels[row])]

    def describe(self, row: int) -> dict:
        """What the index knows of a row besides its codes: labels and caption, where it has them."""
        facts = {}
        if self.label_names is not None:
            facts["labels"] = self.labels_of(row)
        if self.index.captions is not None:
            facts["caption"] = str(self.index.captions[row])
        return facts

    def search(self, code: np.ndarray, modality: str, top_k: int, target: str | None = None,
               asked: dict | None = None) -> dict:
        """The top_k items nearest to a (1, W) `code` of `modality` on `target` (default: the other
        modality), with the query (`asked` adds to it), the search used and the index's facts."""
        target = target or OTHER[modality]
        searcher = self.searcher(target)
        distances, rows = searcher.search(code, top_k)
        results = []
        for rank, (distance, row) in enumerate(zip(distances[0].tolist(), rows[0].tolist()), start=1):
            if row < 0:  # an approximate search found fewer than k
                break
            results.append({"rank": rank, "id": str(self.index.ids[row]), "row": row, "distance": distance,
                            **self.describe(row)})
        return {"index": str(self.index_path), "bits": self.index.bits, "protocol": self.index.meta.get("protocol"),
                "query": {"modality": modality, "code": code[0].tobytes().hex(), **(asked or {})},
                "target": target, "search": searcher.describe(), "results": results}


@dataclass
class Query:
    """One query: a text, an image file, or the stored code of an index item (its image code or its
    text code); `checkpoint` (or an export folder, `encoder`) and `device` serve text and image queries."""
    text: str | None = None
    image: str | None = None
    item_id: str | None = None
    item_modality: str = "image"
    checkpoint: str = ""
    device: str = "cpu"
    encoder: str = ""


def search(index_path, query: Query, top_k: int = 10, target: str | None = None, kind: str | None = None,
           backend: str = "auto") -> dict:
    """The top_k items of the index at `index_path` nearest to `query` on the `target` modality
    (default: the other one), with the query, the search used and the index's facts."""
    engine = SearchEngine(load_index(index_path), index_path, kind, backend, query.checkpoint, query.device,
                          query.encoder)
    if query.item_id is not None:
        try:
            code = engine.item_code(query.item_id, query.item_modality)
        except KeyError as err:
            raise ConfigError(f"--query_id: {err.args[0]}") from None
        asked = {"id": query.item_id}
        if engine.label_names is not None:
            asked["labels"] = engine.labels_of(engine.index.row_of(query.item_id))
        return engine.search(code, query.item_modality, top_k, target, asked)
    if query.text is not None:
        return engine.search(engine.text_code(query.text), "text", top_k, target, {"text": query.text})
    picture = decode_image(query.image, f"--image {query.image}")
    return engine.search(engine.image_code(picture), "image", top_k, target, {"image": query.image})


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
