"""The on-disk code index: packed hash codes of a database, with ids and metadata, in ONE file.

A code index is what a trained model leaves for retrieval: for every database
item (N of them) its id, its packed B-bit code per modality ("image", "text"),
optionally its multi-hot labels and caption, and the facts needed to trust it
(checkpoint, protocol, dataset, model config: `meta`, filled by the caller).
An approximate FAISS index built once over a modality's codes can be stored
with it (`approximate`), so loading does not rebuild it.

Packing: code bit = 1 where the real value is >= 0 (the sign convention of
evaluate.to_sign_codes: 0 and -0.0 map to +1), bits packed big-endian into
ceil(B / 8) bytes per row (np.packbits), unused trailing bits zero.

File: an uncompressed .npz (np.savez, no pickle) with keys
    format_version  ()        int64     FORMAT_VERSION
    bits            ()        int64     B
    ids             (N,)      unicode   unique item ids
    meta_json       ()        unicode   json.dumps(meta)
    codes_<m>       (N, W)    uint8     packed codes of modality m, W = ceil(B / 8)
    labels          (N, C)    uint8     optional, 0/1
    label_names     (C,)      unicode   optional, needs labels
    captions        (N,)      unicode   optional
    image_paths     (N,)      unicode   optional, absolute paths of the items' image files (features
                                        extracted from raw images); meta["image_root"] is their folder
    approx_<m>      (S,)      uint8     optional, faiss.serialize_index_binary bytes;
                                        its kind is meta["approximate"][m]["kind"]
Loading uses np.load(allow_pickle=False): reading a file never runs code from it.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from metrics.inputs import to_sign_codes
from runio.atomic import atomic_write_bytes

__all__ = ["FORMAT_VERSION", "IndexFileError", "CodeIndex", "pack_codes", "packed_width", "save_index",
           "load_index"]

FORMAT_VERSION = 1
_CODES, _APPROX = "codes_", "approx_"
_REQUIRED = ("format_version", "bits", "ids", "meta_json")
_OPTIONAL = ("labels", "label_names", "captions", "image_paths")


class IndexFileError(ValueError):
    """A code index file (or an index about to be saved) is unreadable or inconsistent."""


def packed_width(bits: int) -> int:
    """Bytes per packed code of `bits` bits."""
    return (bits + 7) // 8


def pack_codes(codes) -> np.ndarray:
    """(N, B) real values or +-1 codes (numpy array or torch tensor) -> (N, ceil(B/8)) uint8.

    Bit = 1 where evaluate.to_sign_codes gives +1 (value >= 0), so a packed code
    and the evaluation's code are the same; bool and NaN input are rejected there.
    """
    if not isinstance(codes, torch.Tensor):
        codes = np.asarray(codes)
        if codes.dtype != np.bool_ and not (np.issubdtype(codes.dtype, np.integer)
                                            or np.issubdtype(codes.dtype, np.floating)):
            raise ValueError(f"codes must be numeric, got dtype {codes.dtype}")
    signs = to_sign_codes(codes, name="codes")                   # (N, B) float32 +-1
    return np.packbits(signs.numpy() > 0, axis=1, bitorder="big")


@dataclass
class CodeIndex:
    """N database items: ids, packed codes per modality, metadata (see the module docstring)."""

    bits: int
    ids: np.ndarray                                   # (N,) unicode
    codes: dict                                       # modality -> (N, W) uint8
    meta: dict = field(default_factory=dict)          # JSON-serialisable
    labels: np.ndarray | None = None                  # (N, C) uint8 multi-hot
    label_names: list | None = None                   # C names
    captions: np.ndarray | None = None                # (N,) unicode
    image_paths: np.ndarray | None = None             # (N,) unicode absolute paths ("" = none)
    approximate: dict = field(default_factory=dict)   # modality -> (S,) uint8 faiss bytes
    _row_by_id: dict | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.ids = np.asarray(self.ids)                 # a list of str becomes (N,) unicode
        if self.captions is not None:
            self.captions = np.asarray(self.captions)
        if self.image_paths is not None:
            self.image_paths = np.asarray(self.image_paths)

    @property
    def size(self) -> int:
        return len(self.ids)

    def row_of(self, item_id: str) -> int:
        """The row of `item_id` (the mapping is built on first use: O(N) once)."""
        if self._row_by_id is None:
            rows = {str(v): row for row, v in enumerate(self.ids.tolist())}
            if len(rows) != self.size:
                raise ValueError(f"ids are not unique ({self.size - len(rows)} duplicates)")
            self._row_by_id = rows
        try:
            return self._row_by_id[str(item_id)]
        except KeyError:
            shape = (f"ids look like {str(self.ids[0])!r} ... {str(self.ids[-1])!r}" if self.size
                     else "the index is empty")
            raise KeyError(f"id {item_id!r} is not in the index ({self.size} items; "
                           f"{shape})") from None


def _check(index: CodeIndex, where) -> None:
    """Raise IndexFileError('<where>: <problem>') unless every part of `index` is consistent."""
    def fail(problem):
        raise IndexFileError(f"{where}: {problem}")

    def need(key, a, kind, ndim, rows=None, cols=None):
        a = np.asarray(a)
        ok_kind = a.dtype == np.uint8 if kind == "uint8" else a.dtype.kind == "U"
        want = f"{ndim}-D {kind}" + (f" with {rows} rows" if rows is not None else "") + (
            f" and {cols} columns" if cols is not None else "")
        if (not ok_kind or a.ndim != ndim or (rows is not None and a.shape[0] != rows)
                or (cols is not None and a.shape[1] != cols)):
            fail(f"key '{key}' must be {want}, got shape {a.shape} dtype {a.dtype}")

    if isinstance(index.bits, bool) or not isinstance(index.bits, (int, np.integer)) or index.bits < 1:
        fail(f"key 'bits' must be a positive int, got {index.bits!r}")
    if not isinstance(index.meta, dict):
        fail(f"key 'meta_json' must hold a JSON object (dict), got {type(index.meta).__name__}")
    need("ids", index.ids, "unicode", 1)
    n, width = len(index.ids), packed_width(int(index.bits))
    if not index.codes:
        fail("no codes: give at least one modality")
    unused = 8 * width - int(index.bits)                    # trailing pad bits of the last byte
    for modality, packed in index.codes.items():
        if not (isinstance(modality, str) and modality.isidentifier()):
            fail(f"modality names must be identifiers (they become keys), got {modality!r}")
        need(_CODES + modality, packed, "uint8", 2, n, width)
        if unused and n and (np.asarray(packed)[:, -1] & ((1 << unused) - 1)).any():
            fail(f"key '{_CODES}{modality}' has non-zero padding bits beyond bit {index.bits}")
    if index.labels is not None:
        need("labels", index.labels, "uint8", 2, n)
        if n and np.asarray(index.labels).max(initial=0) > 1:
            fail("key 'labels' must hold 0/1 values")
    if index.label_names is not None:
        if index.labels is None:
            fail("label_names given without labels")
        names = np.asarray(index.label_names)
        need("label_names", names if names.size else names.astype(str), "unicode", 1,
             np.asarray(index.labels).shape[1])
    for key in ("captions", "image_paths"):
        if getattr(index, key) is not None:
            need(key, getattr(index, key), "unicode", 1, n)
    kinds = index.meta.get("approximate")
    for modality, blob in index.approximate.items():
        need(_APPROX + modality, blob, "uint8", 1)
        if modality not in index.codes:
            fail(f"key '{_APPROX}{modality}' has no matching '{_CODES}{modality}'")
        entry = kinds.get(modality) if isinstance(kinds, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
            fail(f"meta['approximate']['{modality}']['kind'] must name the stored index kind")


def save_index(path, index: CodeIndex) -> None:
    """Write `index` to `path` (.npz) atomically; IndexFileError (naming path) if inconsistent."""
    _check(index, path)
    if len(np.unique(index.ids)) != index.size:
        raise IndexFileError(f"{path}: key 'ids' has duplicate ids")
    try:
        meta_json = json.dumps(index.meta, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise IndexFileError(f"{path}: meta is not JSON-serialisable: {err}") from None
    arrays = {"format_version": np.array(FORMAT_VERSION, dtype=np.int64),
              "bits": np.array(int(index.bits), dtype=np.int64),
              "ids": np.asarray(index.ids), "meta_json": np.array(meta_json)}
    arrays.update({_CODES + m: np.asarray(c) for m, c in index.codes.items()})
    arrays.update({_APPROX + m: np.asarray(b) for m, b in index.approximate.items()})
    if index.labels is not None:
        arrays["labels"] = np.asarray(index.labels)
    if index.label_names is not None:
        arrays["label_names"] = np.asarray(index.label_names, dtype=str)
    for key in ("captions", "image_paths"):
        if getattr(index, key) is not None:
            arrays[key] = np.asarray(getattr(index, key))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)   # every array is numeric or unicode (_check): nothing is pickled
    atomic_write_bytes(path, buffer.getvalue())


def _read_all(path: Path) -> dict:
    """Every array of the .npz at `path`, or IndexFileError naming the file and the problem."""
    if not path.is_file():
        raise IndexFileError(f"{path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise IndexFileError(f"{path}: not a readable .npz code index ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise IndexFileError(f"{path}: not an .npz archive (a single .npy array?)")
    arrays = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
                raise IndexFileError(f"{path}: key '{key}' is unreadable ({err})") from None
    return arrays


def _scalar_int(path, arrays, key) -> int:
    a = arrays[key]
    if a.shape != () or a.dtype.kind not in "iu":
        raise IndexFileError(f"{path}: key '{key}' must be a 0-d integer, "
                             f"got shape {a.shape} dtype {a.dtype}")
    return int(a)


def load_index(path) -> CodeIndex:
    """Read a file written by save_index; every problem is an IndexFileError naming the file."""
    path = Path(path)
    arrays = _read_all(path)
    for key in _REQUIRED:
        if key not in arrays:
            raise IndexFileError(f"{path}: missing key '{key}'")
    version = _scalar_int(path, arrays, "format_version")
    if version != FORMAT_VERSION:
        raise IndexFileError(f"{path}: unsupported format_version {version} "
                             f"(this code reads {FORMAT_VERSION})")
    for key in arrays:
        if key not in _REQUIRED + _OPTIONAL and not key.startswith((_CODES, _APPROX)):
            raise IndexFileError(f"{path}: unexpected key '{key}'")
    meta_json = arrays["meta_json"]
    if meta_json.shape != () or meta_json.dtype.kind != "U":
        raise IndexFileError(f"{path}: key 'meta_json' must be a 0-d unicode string, "
                             f"got shape {meta_json.shape} dtype {meta_json.dtype}")
    try:
        meta = json.loads(str(meta_json))
    except json.JSONDecodeError as err:
        raise IndexFileError(f"{path}: key 'meta_json' is not valid JSON ({err})") from None
    label_names = arrays.get("label_names")
    index = CodeIndex(
        bits=_scalar_int(path, arrays, "bits"), ids=arrays["ids"], meta=meta,
        codes={k[len(_CODES):]: a for k, a in arrays.items() if k.startswith(_CODES)},
        labels=arrays.get("labels"), captions=arrays.get("captions"), image_paths=arrays.get("image_paths"),
        label_names=None if label_names is None else label_names.tolist(),
        approximate={k[len(_APPROX):]: a for k, a in arrays.items() if k.startswith(_APPROX)})
    _check(index, path)
    return index
