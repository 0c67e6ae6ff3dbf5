"""Clusters of the shared space, for the `cluster` criterion (selection/criteria.py).

`shared` counts a fixed 5% of the database as each query's relevant items. Where the
data has few labels, the items that share a query's labels are many more than that,
and codes that keep fine detail rank that 5% best while labelled retrieval rewards
codes that keep only the coarse groups (docs/zoo.md: on zoo-fewlabels `shared` ranks
finished runs backwards). `cluster` lets the data set the grain instead: k-means in
the shared space for each k of CLUSTER_COUNTS, the k with the highest silhouette
kept, and an item relevant to a query when the two fall in the same cluster.
"""
from __future__ import annotations

import numpy as np

CLUSTER_COUNTS = (4, 8, 16, 32, 64)   # k-means sizes tried (powers of two, few to many groups)
KMEANS_ITERATIONS = 40                # Lloyd steps after k-means++ seeding (converged on the zoo)
SILHOUETTE_SAMPLE = 800               # points the silhouette is computed on (its cost is quadratic)
SEED = 0                              # the clusters depend on the features only, not on the run's seed


def _squared_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N, c), (k, c) -> (N, k) squared Euclidean distances."""
    return np.maximum((points ** 2).sum(1)[:, None] - 2 * points @ centres.T + (centres ** 2).sum(1)[None], 0.0)


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator) -> tuple:
    """(N, c) points -> (centres (k, c), assignment (N,)): k-means++ seeding, then Lloyd's steps.
    A cluster that empties keeps its last centre."""
    centres = points[[rng.integers(len(points))]]
    for _ in range(k - 1):
        nearest = _squared_distances(points, centres).min(1)
        total = nearest.sum()
        pick = rng.choice(len(points), p=nearest / total) if total > 0 else rng.integers(len(points))
        centres = np.vstack([centres, points[pick]])
    for _ in range(KMEANS_ITERATIONS):
        assignment = _squared_distances(points, centres).argmin(1)
        counts = np.bincount(assignment, minlength=k)
        sums = np.zeros_like(centres)
        np.add.at(sums, assignment, points)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres, _squared_distances(points, centres).argmin(1)


def silhouette(points: np.ndarray, assignment: np.ndarray) -> float:
    """Mean silhouette (b - a) / max(a, b) of (N, c) points: a, the mean distance to the rest of
    the point's cluster; b, the smallest mean distance to another cluster. A point alone in its
    cluster scores 0."""
    distance = np.sqrt(_squared_distances(points, points))                            # (N, N)
    labels, member = np.unique(assignment, return_inverse=True)
    one_hot = np.eye(len(labels))[member]                                               # (N, L)
    sizes = one_hot.sum(0)                                                              # (L,)
    own = sizes[member]                                                                 # (N,)
    summed = distance @ one_hot                      # (N, L): each point's distances summed per cluster
    rows = np.arange(len(points))
    a = summed[rows, member] / np.maximum(own - 1, 1)
    mean_to = summed / sizes                                                            # (N, L)
    mean_to[rows, member] = np.inf
    b = mean_to.min(1) if len(labels) > 1 else np.zeros(len(points))
    score = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(score.mean())


def same_cluster(query_points, database_points) -> tuple:
    """((Q, N) bool: query q and item j fall in the same cluster, the k kept), for (Q, c) and
    (N, c) points: k-means of the database for each k of CLUSTER_COUNTS (below N), the k with the
    highest silhouette on a sample of SILHOUETTE_SAMPLE database points; queries join their
    nearest centre."""
    database = np.asarray(database_points, dtype=np.float64)
    queries = np.asarray(query_points, dtype=np.float64)
    rng = np.random.default_rng(SEED)
    sample = rng.choice(len(database), min(SILHOUETTE_SAMPLE, len(database)), replace=False)
    best = None
    for k in [k for k in CLUSTER_COUNTS if k < len(database)] or [1]:
        centres, assignment = kmeans(database, k, rng)
        score = silhouette(database[sample], assignment[sample])
        if best is None or score > best[0]:
            best = (score, k, centres, assignment)
    _, k, centres, assignment = best
    query_assignment = _squared_distances(queries, centres).argmin(1)
    return query_assignment[:, None] == assignment[None, :], k
