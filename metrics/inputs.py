"""Checking and converting the inputs of the metrics.

Codes and outputs come as torch tensors, numpy arrays or nested lists; every
function here names the argument it rejects in a one-line ValueError.
Sign convention of the whole project: value >= 0 -> +1 (an exact 0 and -0.0
map to +1), value < 0 -> -1.
"""
from __future__ import annotations

import operator

import numpy as np
import torch


def as_2d(x, name: str) -> torch.Tensor:
    """numpy array / tensor / nested list -> 2-D CPU tensor (no copy if possible)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        a = np.asarray(x)
        t = torch.from_numpy(a.copy() if not a.flags.writeable else a)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    return t


def positive_int(value, name: str) -> int:
    try:
        if not isinstance(value, bool) and operator.index(value) >= 1:
            return operator.index(value)
    except TypeError:
        pass
    raise ValueError(f"{name} must be a positive int, got {value!r}")


def signs(t: torch.Tensor, name: str) -> torch.Tensor:
    """2-D tensor -> float32 +1/-1 (value >= 0 -> +1, < 0 -> -1)."""
    if t.dtype == torch.bool:
        raise ValueError(f"{name} is bool; convert {{0,1}} codes to +-1 first (2*x-1)")
    if t.is_floating_point() and torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    # compare in the input dtype: a tiny negative float64 must not round to -0.0
    return torch.where(t >= 0, 1.0, -1.0).to(torch.float32)


def to_sign_codes(x, name: str = "x") -> torch.Tensor:
    """Binarise (Q, B) real values (tensor or array) into float32 +1/-1 codes.

    value >= 0 -> +1 (an exact 0, and -0.0, maps to +1), value < 0 -> -1.
    Bool input is rejected ({0, 1} codes would all map to +1; pass 2*x-1).
    `name` is what error messages call the input.
    """
    return signs(as_2d(x, name), name)


def check_inputs(query, database, query_labels, database_labels):
    """-> q (Q, B), d (N, B) as given; ql (Q, C), dl (N, C) bool. Raises ValueError."""
    q, d = as_2d(query, "query"), as_2d(database, "database")
    ql, dl = as_2d(query_labels, "query_labels"), as_2d(database_labels, "database_labels")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"database has {d.shape[1]} columns, query has {q.shape[1]}")
    if ql.shape[0] != q.shape[0]:
        raise ValueError(f"query_labels has {ql.shape[0]} rows, query has {q.shape[0]}")
    if dl.shape[0] != d.shape[0]:
        raise ValueError(f"database_labels has {dl.shape[0]} rows, database has {d.shape[0]}")
    if ql.shape[1] != dl.shape[1]:
        raise ValueError(f"database_labels has {dl.shape[1]} columns, query_labels has {ql.shape[1]}")
    if q.shape[0] == 0 or d.shape[0] == 0:
        raise ValueError(f"empty query ({q.shape[0]} rows) or database ({d.shape[0]} rows)")
    return q, d, ql != 0, dl != 0


def pack_words(bits: torch.Tensor) -> np.ndarray:
    """(n, B) bool -> (n, ceil(B / 64)) uint64: bit j of a row in word j // 64, unused bits 0.
    Two rows' Hamming distance is the popcount of their XOR; two label rows share a label when
    their AND is not zero."""
    packed = np.packbits(bits.numpy(), axis=1)                       # (n, ceil(B / 8)) uint8
    width = -(-packed.shape[1] // 8) * 8
    packed = np.pad(packed, ((0, 0), (0, width - packed.shape[1])))
    return np.ascontiguousarray(packed).view(np.uint64)
