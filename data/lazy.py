"""Rows of a 2-D HDF5 dataset, read on demand.

HDF5 feature files can be large (NUS-WIDE: about 190k pairs). Their image and
text matrices are not loaded at open time: the trainer reads the training
split once, and the query and database splits a batch of rows at a time while
encoding them, so features never sit in memory twice.
"""
from __future__ import annotations

import numpy as np


class LazyRows:
    """A read-only (N, D) view of an HDF5 dataset that yields float32 numpy rows."""

    ndim = 2

    def __init__(self, path, key):
        import h5py

        self.path, self.key = str(path), key
        self._handle = h5py.File(self.path, "r")
        self._dataset = self._handle[key]
        self.shape = tuple(self._dataset.shape)
        self.stored_dtype = self._dataset.dtype
        self.dtype = np.dtype(np.float32)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        """Rows as float32: a slice or an increasing index array (HDF5's rule)."""
        with np.errstate(over="ignore"):
            return np.asarray(self._dataset[rows], dtype=np.float32)

    def __array__(self, dtype=None, copy=None):
        return self[:] if dtype is None else self[:].astype(dtype, copy=False)

    def blocks(self, rows_per_block=65536):
        """The whole matrix as consecutive float32 blocks (for checks that scan it)."""
        for start in range(0, len(self), rows_per_block):
            yield self[start:start + rows_per_block]

    def __repr__(self):
        return f"LazyRows({self.path!r}, {self.key!r}, shape={self.shape}, stored as {self.stored_dtype})"
