"""Feature loading for UCMFH-PH: UCMFH's pickles, .npz/.h5, demo and wiki.

This package sits beside the per-dataset folders (``data/<name>/``, git
ignored) that hold the features at run time.  See :mod:`data.datasets` for
the layout and :func:`load_dataset` for the entry point.
"""

from .datasets import ALIASES, KNOWN_DATASETS, canonical_dataset_name, load_dataset
from .demo import make_demo_dataset
from .errors import DataError
from .readers import load_split_file
from .safe_pickle import safe_load_pickle
from .splits import DatasetSplits, FeatureSplit

__all__ = [
    "ALIASES",
    "DataError",
    "DatasetSplits",
    "FeatureSplit",
    "KNOWN_DATASETS",
    "canonical_dataset_name",
    "load_dataset",
    "load_split_file",
    "make_demo_dataset",
    "safe_load_pickle",
]
