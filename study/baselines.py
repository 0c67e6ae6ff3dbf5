"""A simple baseline computed by the same code: CCA hashing.

CCA is fitted on the training pairs (image features X, text features Y); the
codes of an image are sign(A^T (x - mean_x)) and of a text sign(B^T (y - mean_y)),
with A, B the top canonical directions. Queries are one modality only (an image
looks for texts with its image alone), so its `paired` and `unimodal` scores
are the same numbers; both are reported, like every model's.
"""
from __future__ import annotations

import numpy as np

from evaluate import retrieval_metrics


def _inverse_sqrt(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return vectors @ np.diag(1.0 / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T


def fit_cca(x: np.ndarray, y: np.ndarray, components: int, reg: float = 1e-4):
    """(N, Dx), (N, Dy) -> (mean_x, mean_y, A (Dx, c), B (Dy, c)), c = min(components, Dx, Dy).
    Ridge `reg` (relative to the mean variance) keeps the covariances invertible."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    mean_x, mean_y = x.mean(0), y.mean(0)
    xc, yc = x - mean_x, y - mean_y
    n = len(x) - 1
    cxx, cyy, cxy = xc.T @ xc / n, yc.T @ yc / n, xc.T @ yc / n
    cxx += reg * np.trace(cxx) / len(cxx) * np.eye(len(cxx))
    cyy += reg * np.trace(cyy) / len(cyy) * np.eye(len(cyy))
    wx, wy = _inverse_sqrt(cxx), _inverse_sqrt(cyy)
    u, _, vt = np.linalg.svd(wx @ cxy @ wy)
    c = min(components, x.shape[1], y.shape[1])
    return mean_x, mean_y, wx @ u[:, :c], wy @ vt.T[:, :c]


def cca_scores(data, bits: int, k=50) -> dict:
    """Fit on data.train, score sign codes of query images vs database texts (I2T) and the reverse."""
    mean_x, mean_y, a, b = fit_cca(data.train.image, data.train.text, bits)
    code = lambda features, mean, proj: np.where((np.asarray(features) - mean) @ proj >= 0, 1.0, -1.0)
    query, database = data.query, data.retrieval
    scores = {"cca_components": a.shape[1]}
    for name, q, db in (("i2t", code(query.image, mean_x, a), code(database.text, mean_y, b)),
                        ("t2i", code(query.text, mean_y, b), code(database.image, mean_x, a))):
        m = retrieval_metrics(q, db, query.label, database.label, k=k)
        for prefix in ("", "unimodal_"):   # paired and unimodal protocols coincide for CCA
            scores.update({f"{prefix}{name}_map": m["map_k"], f"{prefix}{name}_map_all": m["map_all"],
                           f"{prefix}{name}_precision_k": m["precision_k"]})
    return scores
