"""Dataset names and :func:`load_dataset`, the one entry point the trainer uses.

Layout (UCMFH's): ``<data_root>/<name>/{train,query,retrieval}.pkl``, each a
dict with ``image`` (N x Di), ``text`` (N x Dt) and ``label`` (N x C
multi-hot).  For each split the first of ``.pkl``, ``.npz``, ``.h5`` that
exists is read (see :mod:`data.readers`).  ``demo`` is generated on first use,
the zoo sets (:mod:`data.zoo`) are generated in memory on every load, and
``wiki`` is read from the original .mat/.list files.  Any other name is
taken as a folder of the user's own features in the same layout, or in the
embedding-folder layout of clip-retrieval (``img_emb/``, ``text_emb/``,
``metadata/``: no labels; see :mod:`data.embedding_folder`).
"""

from pathlib import Path

from .demo import SPLIT_FILES as DEMO_FILES
from .demo import make_demo_dataset
from .embedding_folder import is_embedding_folder, load_embedding_folder
from .errors import DataError
from .readers import SPLIT_EXTENSIONS, find_split_file, load_split_file
from .splits import DatasetSplits
from .validate import SPLIT_NAMES, check_same_widths, validate_split
from .wiki import load_wiki
from .zoo import RANDOM_PREFIX, ZOO, is_zoo_set, load_zoo

KNOWN_DATASETS = {
    "mirflickr": "MIRFlickr-25K, UCMFH CLIP features, 24 labels",
    "nus-wide": "NUS-WIDE (10 most frequent concepts), UCMFH CLIP features",
    "mscoco": "MS-COCO, UCMFH CLIP features, 80 labels",
    "demo": "synthetic CLIP-like features, 24 labels, generated on first use",
    "wiki": "Wikipedia image-text set, SIFT image / tf-idf or LDA text, 10 categories",
    **{name: f"synthetic zoo set, generated in memory: {spec.description}" for name, spec in ZOO.items()},
}
ALIASES = {"flickr": "mirflickr", "nus": "nus-wide", "coco": "mscoco"}

# Every known dataset has at least one label per item, so a row with none
# means a broken file; a user's own folder may legitimately have such rows.
_LABEL_PROMISED = frozenset(KNOWN_DATASETS)


def canonical_dataset_name(name):
    """Map an alias or a known name (any case) to its canonical name.

    Unknown names are returned unchanged: they name the user's own folder.
    """
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in KNOWN_DATASETS or is_zoo_set(key) else name


def _missing_split_message(folder, name, split):
    expected = folder / f"{split}.pkl"
    also = ", ".join(f"{split}{ext}" for ext in SPLIT_EXTENSIONS[1:])
    files = ", ".join(f"{s}.pkl" for s in SPLIT_NAMES[:-1]) + f" and {SPLIT_NAMES[-1]}.pkl"
    if name in KNOWN_DATASETS:
        hint = f"put UCMFH's feature files {files} in {folder}/ (see docs/data.md)"
    else:
        hint = (f"{name!r} is not a known dataset ({', '.join(KNOWN_DATASETS)} or {RANDOM_PREFIX}<k>), "
                f"so {folder}/ must hold your own {files} (see docs/data.md)")
    return f"{expected} not found (also looked for {also}): {hint}"


def _load_folder(folder, name):
    """Read and validate the three splits in ``folder``."""
    splits = {}
    for split in SPLIT_NAMES:
        path = find_split_file(folder, split)
        if path is None:
            raise DataError(_missing_split_message(folder, name, split))
        splits[split] = validate_split(load_split_file(path), path, name,
                                       require_label=name in _LABEL_PROMISED)
    check_same_widths(splits)
    return DatasetSplits(name=name, **splits)


def _load_demo(folder):
    # Generated when any of its files is missing, so a folder left half
    # written by an interrupted run heals itself; the output is deterministic.
    if not all((folder / f).is_file() for f in DEMO_FILES):
        make_demo_dataset(folder)
    try:
        return _load_folder(folder, "demo")
    except DataError as exc:
        raise DataError(f"{exc} (the demo set is generated: delete {folder}/ "
                        "to regenerate it)") from None


def load_dataset(name, data_root="data", wiki_text="lda"):
    """Load ``name`` from ``<data_root>/<name>/`` as validated float32 splits.

    ``wiki_text`` ("tfidf" or "lda") applies to the ``wiki`` dataset only.
    Raises :class:`DataError` with a one-line message for any missing or
    malformed file.
    """
    name = canonical_dataset_name(name)
    folder = Path(data_root) / name
    if name == "demo":
        return _load_demo(folder)
    if name == "wiki":
        return load_wiki(folder, wiki_text)
    if is_zoo_set(name):
        return load_zoo(name)
    if name not in KNOWN_DATASETS and find_split_file(folder, "train") is None and is_embedding_folder(folder):
        return load_embedding_folder(folder, name)
    return _load_folder(folder, name)
