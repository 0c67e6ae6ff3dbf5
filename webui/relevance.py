"""Which results of a search are relevant to its query, for the search page: marks and P@k.

The evaluation's rule (evaluate.py, metrics/): a result is relevant when it shares at least one label
with the query. Only a query by item id has labels (the item's); a typed text or an uploaded image has
none, and an index without labels says nothing of relevance, so their results carry no marks.
"""
from __future__ import annotations

import numpy as np

from hashindex.index_file import CodeIndex


def judge(found: dict, index: CodeIndex, query_row: int | None, unjudged_why: str) -> dict:
    """Add `relevant` (bool) to each result of `found` and `precision_at_k` (the share of them that is
    relevant, k = the number of results) plus `relevance` (one line: what a relevant result shares,
    or why there are no marks) to `found`. `query_row` is the query item's row, None for a text or image query, which
    `unjudged_why` then names ("a text query has no labels")."""
    found["precision_at_k"] = None
    if index.labels is None:
        found["relevance"] = "no marks: the index has no labels"
    elif query_row is None:
        found["relevance"] = f"no marks: {unjudged_why}"
    elif not found["results"]:
        found["relevance"] = "no marks: no results"
    else:
        rows = [result["row"] for result in found["results"]]
        shared = index.labels[rows].astype(np.int64) @ index.labels[query_row].astype(np.int64)
        for result, count in zip(found["results"], shared.tolist()):
            result["relevant"] = count > 0
        found["precision_at_k"] = float(np.count_nonzero(shared)) / len(rows)
        found["relevance"] = f"shares a label with item {index.ids[query_row]}"
    return found
