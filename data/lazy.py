"""Rows of a 2-D HDF5 dataset (LazyRows) or of .npy shards (NpyRows), read on demand; chosen rows
of any column (RowSelection), read when asked.

HDF5 feature files can be large (NUS-WIDE: about 190k pairs). Their image and
text matrices are not loaded at open time: the trainer reads the training
split once, and the query and database splits a batch of rows at a time while
encoding them, so features never sit in memory twice.
"""
from __future__ import annotations

import numpy as np

from .errors import DataError, describe


class RowsOnDemand:
    """What a lazily read (N, D) feature matrix offers besides `shape` and float32 `self[rows]`."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __len__(self):
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        return self[:] if dtype is None else self[:].astype(dtype, copy=False)

    def blocks(self, rows_per_block=65536):
        """The whole matrix as consecutive float32 blocks (for checks that scan it)."""
        for start in range(0, len(self), rows_per_block):
            yield self[start:start + rows_per_block]


class LazyRows(RowsOnDemand):
    """A read-only (N, D) view of an HDF5 dataset that yields float32 numpy rows."""

    def __init__(self, path, key):
        import h5py

        self.path, self.key = str(path), key
        self._handle = h5py.File(self.path, "r")
        self._dataset = self._handle[key]
        self.shape = tuple(self._dataset.shape)
        self.stored_dtype = self._dataset.dtype

    def __getitem__(self, rows):
        """Rows as float32: a slice or an increasing index array (HDF5's rule)."""
        with np.errstate(over="ignore"):
            return np.asarray(self._dataset[rows], dtype=np.float32)

    def __repr__(self):
        return f"LazyRows({self.path!r}, {self.key!r}, shape={self.shape}, stored as {self.stored_dtype})"


class NpyRows(RowsOnDemand):
    """A read-only (N, D) view of one or more 2-D .npy files stacked by rows (clip-retrieval's
    shards), read with plain file reads into float32 numpy rows. Nothing is memory-mapped, so only
    the rows asked for are ever resident: the page cache holds the rest, outside this process."""

    def __init__(self, paths):
        self.paths = [str(p) for p in paths]
        self._offsets, starts, widths, dtypes = [], [0], set(), set()
        for path in self.paths:
            offset, shape, dtype = _npy_layout(path)
            self._offsets.append(offset)
            starts.append(starts[-1] + shape[0])
            widths.add(shape[1])
            dtypes.add(dtype)
        if len(widths) > 1:
            raise DataError(f"{self.paths[0]} ...: the .npy shards have different widths {sorted(widths)}")
        if len(dtypes) > 1:
            raise DataError(f"{self.paths[0]} ...: the .npy shards have different dtypes "
                            f"{sorted(map(str, dtypes))}")
        self._starts = np.array(starts)                     # (S + 1,) first row of each shard, then N
        self.shape = (int(starts[-1]), widths.pop())
        self.stored_dtype = dtypes.pop()

    @property
    def shard_rows(self) -> list:
        """The row count of each file, in order."""
        return np.diff(self._starts).tolist()

    def _read_span(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 as stored, shard by shard, each read straight into the output."""
        out = np.empty((stop - start, self.shape[1]), self.stored_dtype)
        row_bytes = self.shape[1] * self.stored_dtype.itemsize
        shard = int(np.searchsorted(self._starts, start, side="right")) - 1
        at = start
        while at < stop:
            first, end = self._starts[shard], min(stop, self._starts[shard + 1])
            if end == at:       # an empty shard
                shard += 1
                continue
            with open(self.paths[shard], "rb") as handle:
                handle.seek(self._offsets[shard] + (at - first) * row_bytes)
                target = out[at - start:end - start]
                if handle.readinto(memoryview(target).cast("B")) != target.nbytes:
                    raise DataError(f"{self.paths[shard]}: file is shorter than its .npy header says")
            at, shard = end, shard + 1
        return out

    def __getitem__(self, rows):
        """Rows as float32: a slice (step 1) or an index array."""
        if isinstance(rows, slice):
            start, stop, step = rows.indices(len(self))
            if step != 1:
                raise IndexError("NpyRows takes slices with step 1 or index arrays")
            stored = self._read_span(start, max(start, stop))
        else:
            rows = np.asarray(rows, dtype=np.int64).reshape(-1)
            if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
                raise IndexError(f"row index out of range for {len(self)} rows")
            rows = np.where(rows < 0, rows + len(self), rows)
            order = np.argsort(rows, kind="stable")
            wanted = rows[order]
            # runs of consecutive rows are read with one read each
            breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
            parts = [self._read_span(int(run[0]), int(run[-1]) + 1)[run - run[0]]
                     for run in np.split(wanted, breaks) if run.size]
            stored = np.empty((len(rows), self.shape[1]), self.stored_dtype)
            stored[order] = np.concatenate(parts) if parts else stored[:0]
        with np.errstate(over="ignore"):
            return stored.astype(np.float32, copy=False)

    def __repr__(self):
        return f"NpyRows({len(self.paths)} files from {self.paths[0]!r}, shape={self.shape}, stored as {self.stored_dtype})"


def _npy_layout(path) -> tuple:
    """(data offset, shape, dtype) of a 2-D numeric C-order .npy file, read from its header
    (numpy's parser: a literal, never code); DataError naming the file otherwise."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read_header(handle)
            offset = handle.tell()
            stored = handle.seek(0, 2) - offset         # bytes after the header
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({describe(exc)})") from None
    if len(shape) != 2 or dtype.kind not in "biuf" or fortran_order:
        raise DataError(f"{path}: expected a 2-D numeric C-order array, got shape {shape} dtype {dtype}"
                        + (" in Fortran order" if fortran_order else ""))
    # the header is only a promise: a crafted one can give dimensions no file could hold
    if min(shape) < 0:
        raise DataError(f"{path}: the .npy header gives negative dimensions {shape}")
    promised = shape[0] * shape[1] * dtype.itemsize     # Python integers: no overflow
    if stored < promised:
        raise DataError(f"{path}: file is shorter than its .npy header says (shape {shape} of {dtype}: "
                        f"{promised} bytes of data, the file holds {stored})")
    return offset, shape, dtype


class RowSelection:
    """Rows `index` ((M,) int64, increasing) of a column that has len and self[rows] (a numpy array,
    a RowsOnDemand, a metadata column, another RowSelection), read from it only when asked: held-out
    queries and the database without them are never copied whole."""

    def __init__(self, column, index: np.ndarray):
        self.column, self.index = column, index
        self.shape = (len(index), *getattr(column, "shape", (len(column),))[1:])
        self.ndim = len(self.shape)

    @property
    def dtype(self):
        return self.column.dtype

    def __len__(self):
        return len(self.index)

    def __getitem__(self, rows):
        """Row `rows` (an int), or rows (a slice or an index array) as the column gives them; a run of
        consecutive rows (a batch of a contiguous selection) is read as one slice."""
        picked = self.index[rows]
        if picked.ndim == 0:
            return self.column[int(picked)]
        if len(picked) == 0 or (picked[-1] - picked[0] == len(picked) - 1 and np.all(np.diff(picked) == 1)):
            first = int(picked[0]) if len(picked) else 0
            return self.column[first:first + len(picked)]
        return self.column[picked]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[:], dtype=dtype)

    def __repr__(self):
        return f"RowSelection({len(self)} rows of {self.column!r})"
