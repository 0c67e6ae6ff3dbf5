"""Checks that turn raw arrays into a :class:`FeatureSplit` or a clear error.

Every failure is a one-line :class:`DataError` that names the file and the
key, because the usual cause is a wrong or half-converted file and the user
needs to know which one.  The checks are vectorised: a 190k x 512 split is
checked in a few numpy passes, with no Python loop over rows.
"""

import numpy as np

from .errors import DataError
from .lazy import RowsOnDemand
from .splits import FeatureSplit

SPLIT_NAMES = ("train", "query", "retrieval")

# bool, signed int, unsigned int, float; complex, strings, datetimes and
# objects are not features.
_NUMERIC_KINDS = "biuf"


def _describe_value(value):
    if isinstance(value, np.ndarray):
        return f"a {value.ndim}-D {value.dtype} array of shape {value.shape}"
    return f"a {type(value).__name__}"


def _as_2d_float32(value, source, key):
    """Check ``value`` is a 2-D numeric array and return it as float32
    (rows read on demand from HDF5 or .npy files stay lazy: they already yield float32)."""
    if isinstance(value, RowsOnDemand):
        return value
    if not (isinstance(value, np.ndarray) and value.ndim == 2
            and value.dtype.kind in _NUMERIC_KINDS):
        raise DataError(f"{source}: key '{key}' must be a 2-D numeric array, "
                        f"got {_describe_value(value)}")
    # copy=False: float32 input (the common case) is used without copying.
    # Overflow to inf is reported by check_finite, so numpy's warning is muted.
    with np.errstate(over="ignore"):
        return value.astype(np.float32, copy=False)


def check_finite(array, source, key):
    # Checked after the float32 cast so float64 values that overflow to inf
    # are caught too.
    blocks = array.blocks(16384) if isinstance(array, RowsOnDemand) else [array]   # 32 MB at 512-d
    bad_rows = sum(int(np.count_nonzero(~np.isfinite(block).all(axis=1))) for block in blocks)
    if bad_rows:
        raise DataError(f"{source}: key '{key}' has NaN or inf values in "
                        f"{bad_rows} of {len(array)} rows")


def _check_labels(label, source, key, require_label, dataset):
    bad = (label != 0) & (label != 1)
    if bad.any():
        example = label[bad].flat[0]
        raise DataError(f"{source}: key '{key}' must hold only 0/1, found "
                        f"{int(np.count_nonzero(bad))} other values (e.g. {example})")
    if require_label:
        empty = int(np.count_nonzero(~label.any(axis=1)))
        if empty:
            raise DataError(f"{source}: key '{key}' has {empty} rows with no "
                            f"label ({dataset} promises at least one per item)")


def validate_split(raw, source, dataset, require_label, names=None):
    """Check one split's raw arrays and return a float32 :class:`FeatureSplit`.

    ``raw`` maps image/text/label to arrays.  ``require_label`` enforces at
    least one label per row (datasets that promise it).  ``names`` optionally
    maps image/text/label to the names the arrays have in the file (e.g.
    ``I_tr`` for wiki), so messages use the file's own words.
    """
    names = {"image": "image", "text": "text", "label": "label", **(names or {})}
    arrays = {key: _as_2d_float32(raw[key], source, names[key])
              for key in ("image", "text", "label")}
    counts = {key: len(a) for key, a in arrays.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{names[k]} {n}" for k, n in counts.items())
        raise DataError(f"{source}: keys '{names['image']}', '{names['text']}', "
                        f"'{names['label']}' have different row counts ({listed})")
    if counts["image"] == 0:
        raise DataError(f"{source}: key '{names['image']}' is empty (0 rows); "
                        "every split needs at least one item")
    for key in ("image", "text"):
        check_finite(arrays[key], source, names[key])
    _check_labels(arrays["label"], source, names["label"], require_label, dataset)
    return FeatureSplit(arrays["image"], arrays["text"], arrays["label"], str(source),
                        _check_ids(raw.get("ids"), source, counts["image"]))


def _check_ids(ids, source, rows):
    """Optional ids: a 1-D array of numbers or strings, one per row, returned as str."""
    if ids is None:
        return None
    ids = np.asarray(ids)
    if ids.dtype == object and ids.ndim == 1 and all(isinstance(v, (str, int)) for v in ids):
        ids = ids.astype(str)
    if ids.ndim != 1 or len(ids) != rows or ids.dtype.kind not in "iuU":
        raise DataError(f"{source}: key 'ids' must be a 1-D array of {rows} numbers or strings "
                        f"(one per row), got {_describe_value(ids)}")
    return ids.astype(str)


def check_same_widths(splits):
    """Check query/retrieval feature and label widths match train's.

    ``splits`` maps split name -> :class:`FeatureSplit`.  The message names
    both files, since either one may be the wrong one.
    """
    train = splits["train"]
    for split_name in ("query", "retrieval"):
        other = splits[split_name]
        for key in ("image", "text", "label"):
            want = getattr(train, key).shape[1]
            got = getattr(other, key).shape[1]
            if got != want:
                raise DataError(
                    f"{other.source}: key '{key}' has {got} columns but in "
                    f"{train.source} it has {want} (all splits must match)")
