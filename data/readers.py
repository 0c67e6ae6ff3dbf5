"""Reading one split file (.pkl, .npz or .h5) into a dict of raw arrays.

All three formats hold the same thing: top-level entries ``image``,
``text`` and ``label``, and optionally ``ids`` (one id per row, which code
indexes and search results show).  Other entries (captions, ...) are allowed
and ignored, and in .npz/.h5 files they are not even read.  The arrays are
returned as stored; :mod:`data.validate` checks and converts them.
"""

from pathlib import Path

import numpy as np

from .errors import DataError, describe
from .lazy import LazyRows
from .safe_pickle import safe_load_pickle

REQUIRED_KEYS = ("image", "text", "label")
OPTIONAL_KEYS = ("ids",)

# Search order for a split's file: UCMFH's pickles first (the documented
# layout), then .npz, then .h5.  The first one that exists is used.
SPLIT_EXTENSIONS = (".pkl", ".npz", ".h5")


def find_split_file(folder, split):
    """Return the first existing ``<folder>/<split><ext>`` or ``None``."""
    for ext in SPLIT_EXTENSIONS:
        candidate = Path(folder) / f"{split}{ext}"
        if candidate.is_file():
            return candidate
    return None


def _select_required(mapping, path):
    """Pick the required keys out of ``mapping`` or name the one missing."""
    for key in REQUIRED_KEYS:
        if key not in mapping:
            found = ", ".join(repr(k) for k in mapping) or "none"
            raise DataError(f"{path}: missing key '{key}' (found keys: {found})")
    return {key: mapping[key] for key in REQUIRED_KEYS + OPTIONAL_KEYS if key in mapping}


def _read_pickle(path):
    obj = safe_load_pickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict with keys "
                        f"{', '.join(REQUIRED_KEYS)}, got {type(obj).__name__}")
    return _select_required(obj, path)


def _read_npz(path):
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({describe(exc)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected a .npz archive of arrays, "
                        "got a single .npy array")
    with archive:
        chosen = _select_required({k: None for k in archive.files}, path)
        out = {}
        for key in chosen:
            try:
                out[key] = archive[key]
            except Exception as exc:  # e.g. object arrays without allow_pickle
                raise DataError(f"{path}: key '{key}' cannot be read "
                                f"({describe(exc)})") from None
        return out


def _read_h5(path):
    """Labels are read at once; image and text stay in the file as LazyRows."""
    import h5py  # imported here so .pkl/.npz users do not pay for it

    try:
        handle = h5py.File(path, "r")
    except Exception as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({describe(exc)})") from None
    with handle:
        chosen = _select_required({k: None for k in handle.keys()}, path)
        out = {}
        for key in chosen:
            node = handle[key]
            if not isinstance(node, h5py.Dataset):
                raise DataError(f"{path}: key '{key}' must be a 2-D numeric "
                                f"array, got an HDF5 {type(node).__name__}")
            if key == "ids":
                out[key] = np.array([v.decode() if isinstance(v, bytes) else v for v in node[()]])
            elif key == "label" or node.ndim != 2 or node.dtype.kind not in "biuf":
                out[key] = node[()]  # small, or malformed: validation reports it
            else:
                out[key] = LazyRows(path, key)
        return out


_READERS = {".pkl": _read_pickle, ".npz": _read_npz, ".h5": _read_h5}


def load_split_file(path):
    """Read ``image``, ``text`` and ``label`` from a .pkl, .npz or .h5 file.

    Returns ``{"image": ..., "text": ..., "label": ...}`` with the arrays as
    stored (no dtype conversion).  Raises :class:`DataError` if the file is
    missing, unreadable, not a mapping or lacks one of the keys.
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type "
                        f"(expected one of {', '.join(SPLIT_EXTENSIONS)})")
    if not path.is_file():
        raise DataError(f"{path} not found")
    return reader(path)
