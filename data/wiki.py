"""The Wikipedia image-text benchmark (Rasiwasia et al., 2010), read as published.

Files expected in ``<data_root>/wiki/`` (see ``shared/data/wiki/README.md``):
``raw_features_sph.mat`` (``I_tr``/``I_te`` 128-d SIFT bag-of-words image
features; ``T_tfidf_tr``/``T_tfidf_te`` 1000-d tf-idf or ``T_tr``/``T_te``
10-d LDA text features) and ``trainset_txt_img_cat.list`` /
``testset_txt_img_cat.list`` (``text-id<TAB>image-id<TAB>category 1..10``,
one line per row of the matching ``*_tr`` / ``*_te`` arrays).

Protocol from the literature: query = the 693 test pairs, train = the 2,173
training pairs, retrieval = the same 2,173 training pairs (query and
retrieval disjoint); relevance = same category, stored as a one-hot label
(category k -> column k-1).

Every feature row is scaled to unit L2 norm: the model is built for CLIP
features, which are unit-norm, and the raw SIFT histograms / tf-idf vectors
are on unrelated scales.  Direction, hence cosine ranking, is unchanged.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np

from .errors import DataError, describe
from .splits import DatasetSplits
from .validate import validate_split

MAT_FILE = "raw_features_sph.mat"
LIST_FILES = {"train": "trainset_txt_img_cat.list", "test": "testset_txt_img_cat.list"}
NUM_CATEGORIES = 10

# wiki_text choice -> (.mat key for the training rows, for the test rows)
TEXT_FEATURES = {"tfidf": ("T_tfidf_tr", "T_tfidf_te"), "lda": ("T_tr", "T_te")}
IMAGE_KEYS = ("I_tr", "I_te")


def _require(path):
    if not path.is_file():
        raise DataError(
            f"{path} not found: the wiki folder should be the one described in "
            "docs/data.md, holding raw_features_sph.mat and the "
            "trainset/testset_txt_img_cat.list files (e.g. pass --data_root ../shared/data)")


def _read_categories(path):
    """Return the 0-based category of each line of a ``*_txt_img_cat.list``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read file ({describe(exc)})") from None
    categories = []
    for number, line in enumerate(lines, start=1):
        fields = line.split("\t")
        if len(fields) != 3 or not fields[2].strip().isdigit() \
                or not 1 <= int(fields[2]) <= NUM_CATEGORIES:
            raise DataError(f"{path}: line {number} is not 'text-id<TAB>image-id"
                            f"<TAB>category 1..{NUM_CATEGORIES}': {line[:80]!r}")
        categories.append(int(fields[2]) - 1)
    return np.asarray(categories, dtype=np.int64)


def _read_mat(path, keys):
    from scipy.io import loadmat, whosmat  # only wiki needs scipy

    try:
        mat = loadmat(path, variable_names=list(keys))
    except Exception as exc:
        raise DataError(f"{path}: not a readable MATLAB file ({describe(exc)})") from None
    for key in keys:
        if key not in mat:
            found = ", ".join(repr(name) for name, _, _ in whosmat(path))
            raise DataError(f"{path}: missing key '{key}' (found keys: {found or 'none'})")
    return {key: mat[key] for key in keys}


def _unit_rows(x):
    # Rows of zeros (empty documents) stay zero instead of becoming NaN.
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, np.finfo(x.dtype).tiny)).astype(np.float32)


def load_wiki(folder, wiki_text="lda"):
    """Load the Wikipedia set from ``folder`` as :class:`DatasetSplits`.

    ``wiki_text`` picks the text features: ``"tfidf"`` (1000-d) or ``"lda"``
    (10-d).  ``train`` and ``retrieval`` share the same arrays.
    """
    if wiki_text not in TEXT_FEATURES:
        raise DataError(f"unknown wiki_text {wiki_text!r}: choose one of "
                        f"{', '.join(repr(k) for k in TEXT_FEATURES)}")
    folder = Path(folder)
    mat_path = folder / MAT_FILE
    for path in [mat_path, *(folder / name for name in LIST_FILES.values())]:
        _require(path)
    text_keys = TEXT_FEATURES[wiki_text]
    mat = _read_mat(mat_path, IMAGE_KEYS + text_keys)

    splits = {}
    for part, image_key, text_key in zip(("train", "test"), IMAGE_KEYS, text_keys):
        list_path = folder / LIST_FILES[part]
        categories = _read_categories(list_path)
        for key in (image_key, text_key):
            rows = mat[key].shape[0] if mat[key].ndim == 2 else None
            if rows is not None and rows != len(categories):
                raise DataError(f"{list_path}: has {len(categories)} lines but key "
                                f"'{key}' in {mat_path} has {rows} rows (they must match)")
        raw = {"image": mat[image_key], "text": mat[text_key],
               "label": np.eye(NUM_CATEGORIES, dtype=np.float32)[categories]}
        split = validate_split(raw, mat_path, "wiki", require_label=True,
                               names={"image": image_key, "text": text_key})
        split.image, split.text = _unit_rows(split.image), _unit_rows(split.text)
        splits[part] = split

    train, test = splits["train"], splits["test"]
    for attr, (train_key, test_key) in (("image", IMAGE_KEYS), ("text", text_keys)):
        want, got = getattr(train, attr).shape[1], getattr(test, attr).shape[1]
        if want != got:
            raise DataError(f"{mat_path}: key '{test_key}' has {got} columns but "
                            f"'{train_key}' has {want} (they must match)")
    # A separate FeatureSplit (same arrays) so that code which replaces a
    # split's attributes cannot change the other split by accident.
    return DatasetSplits(name="wiki", train=train, query=test, retrieval=replace(train))
