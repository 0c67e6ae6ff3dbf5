"""Seeded query / retrieval / train splits of a raw dataset's items.

The protocol of the cross-modal hashing literature: a random set of query
items, the rest as the retrieval database, and the training set drawn from
the database.  :data:`SPLIT_SIZES` holds the usual sizes per dataset.  The
same seed, item count and sizes always give the same split (numpy's PCG64
``Generator``), so a split is reproduced from the same item list and seed.
"""

import numpy as np

from ..errors import DataError

SPLIT_SIZES = {
    "mirflickr": {"query": 2000, "train": 5000},
    "nus-wide": {"query": 2100, "train": 10500},
    "mscoco": {"query": 5000, "train": 10000},
}


def _count(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise DataError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def make_splits(num_items, num_query, num_train, seed=0):
    """Split ``range(num_items)`` into ``query``, ``retrieval`` and ``train``.

    A permutation drawn with ``numpy.random.default_rng(seed)`` gives the
    query (its first ``num_query`` entries) and the retrieval set (the rest);
    ``num_train`` items are then drawn from the retrieval set without
    replacement.  Returns sorted int64 index arrays under those three keys:
    query and retrieval are disjoint and cover every item, train is a subset
    of retrieval.  Raises :class:`DataError` when the data is too small.
    """
    num_items = _count(num_items, "num_items")
    num_query = _count(num_query, "num_query")
    num_train = _count(num_train, "num_train")
    if num_query < 1 or num_train < 1:
        raise DataError(f"split sizes must be positive: num_query={num_query}, "
                        f"num_train={num_train}")
    if num_query >= num_items:
        raise DataError(f"cannot take {num_query} queries from {num_items} items "
                        "(the retrieval set would be empty); use fewer queries")
    if num_train > num_items - num_query:
        raise DataError(f"cannot draw {num_train} training items from the {num_items - num_query} "
                        f"retrieval items left by {num_items} items minus {num_query} queries; "
                        "use a smaller training set or fewer queries")
    rng = np.random.default_rng(seed)
    order = rng.permutation(num_items)
    query, retrieval = order[:num_query], order[num_query:]
    train = rng.choice(retrieval, size=num_train, replace=False)
    return {name: np.sort(part).astype(np.int64)
            for name, part in (("query", query), ("retrieval", retrieval), ("train", train))}
