"""Hamming-distance k-nearest-neighbour search over packed codes (see hashindex/index_file.py).

Exact search ("flat") orders the database by (Hamming distance, row) and keeps
the first k: the tie order of evaluate.py, so a search result and the mAP
ranking agree. Two backends give identical results, ties included:
  * numpy: XOR + popcount over machine words, then a distance histogram finds
    the k-th distance, so no sort of the N distances is needed;
  * faiss: IndexBinaryFlat. Its heap keeps an arbitrary subset of the items
    tied at the k-th distance, so search() only supplies that distance and a
    range_search (which keeps distances strictly below its radius) fetches
    every item up to it, which is then sorted by (distance, row).
Approximate kinds need faiss: "hnsw" (IndexBinaryHNSW) and "ivf"
(IndexBinaryIVF over an IndexBinaryFlat quantizer trained on a sample). They
can be serialised into a CodeIndex (store_approximate) and reloaded without
rebuilding (make_searcher); without faiss, make_searcher falls back to exact
numpy search.
"""
from __future__ import annotations

import contextlib
import math
import operator
import warnings

import numpy as np

from hashindex.index_file import CodeIndex, packed_width

__all__ = ["KINDS", "MISSING", "FaissUnavailableError", "faiss_available", "HammingSearcher",
           "make_searcher", "store_approximate"]

KINDS = ("flat", "hnsw", "ivf")
MISSING = np.iinfo(np.int32).max    # distance reported with row -1 when an approximate
                                    # index finds fewer than k items
_RESULTS_PER_BLOCK = 2**22          # bounds a block's (queries, k) result arrays
_BUILD_ROWS_PER_THREAD = 50_000     # smaller HNSW builds run on one thread
HNSW_EF_SEARCH, IVF_NPROBE = 128, 32  # default search-time parameters


class FaissUnavailableError(RuntimeError):
    """An approximate index (or backend="faiss") was asked for and faiss is not installed."""


def _import_faiss(what: str):
    try:
        import faiss
    except ImportError:
        raise FaissUnavailableError(f"{what} needs faiss: pip install faiss-cpu") from None
    return faiss


def faiss_available() -> bool:
    try:
        _import_faiss("")
    except FaissUnavailableError:
        return False
    return True


@contextlib.contextmanager
def _faiss_threads(faiss, parallel_units: int):
    """Run faiss with at most `parallel_units` OpenMP threads (and no more than it had).

    Extra OpenMP threads that only wait cost dearly when another process keeps
    a core busy (measured on this project's 2-core machine, 2 threads vs 1):
    one search over 1M codes 140 ms vs 1.7 ms (faiss parallelises a search over
    queries, so one query gains nothing), an IndexBinaryIVF add of 300k codes
    219 s vs 0.5 s, its k-means 5.9 s vs 3.9 s.
    """
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, min(previous, parallel_units)))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _check_packed(packed, bits: int, name: str) -> np.ndarray:
    """(rows, ceil(bits/8)) uint8 with zero padding bits, as a C-contiguous array."""
    packed = np.ascontiguousarray(packed)
    width = packed_width(bits)
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != width:
        raise ValueError(f"{name} must be (rows, {width}) uint8 packed {bits}-bit codes, "
                         f"got shape {packed.shape} dtype {packed.dtype}")
    unused = 8 * width - bits
    if unused and len(packed) and (packed[:, -1] & ((1 << unused) - 1)).any():
        raise ValueError(f"{name} has non-zero padding bits beyond bit {bits} (use pack_codes)")
    return packed


class _NumpyFlat:
    """Exact search: XOR + np.bitwise_count over (words, N) uint words, one query at a time.

    Codes are zero-padded to a whole word (1, 2, 4 or a multiple of 8 bytes);
    the zero pad XORs to zero, so distances are unchanged. The words are
    stored word-major (words, N) so each pass reads one contiguous array; for
    widths that are one word (e.g. 64 bits) that is a view of the codes.
    """

    def __init__(self, packed: np.ndarray, bits: int):
        if not hasattr(np, "bitwise_count"):
            raise ImportError("the numpy Hamming search needs numpy >= 2.0 (np.bitwise_count)")
        width = packed.shape[1]
        padded = width if width in (1, 2, 4) else 4 if width == 3 else -(-width // 8) * 8
        self.word = np.dtype(f"uint{8 * min(padded, 8)}")
        self.padded = padded
        self.bits = bits
        self.words = self._to_words(packed)                     # (W, N)
        self.dist_dtype = np.uint8 if bits < 256 else np.uint16

    def _to_words(self, packed: np.ndarray) -> np.ndarray:
        if self.padded != packed.shape[1]:
            packed = np.pad(packed, ((0, 0), (0, self.padded - packed.shape[1])))
        return np.ascontiguousarray(packed.view(self.word).T)

    def search(self, queries: np.ndarray, k: int):
        n = self.words.shape[1]
        query_words = self._to_words(queries)                   # (W, Q)
        xor = np.empty(n, dtype=self.word)                      # scratch reused per query
        counts = np.empty(n, dtype=np.uint8)
        dist = np.empty(n, dtype=self.dist_dtype)
        out_d = np.empty((len(queries), k), dtype=np.int32)
        out_r = np.empty((len(queries), k), dtype=np.int64)
        for qi in range(len(queries)):
            np.bitwise_xor(self.words[0], query_words[0, qi], out=xor)
            np.bitwise_count(xor, out=dist)
            for w in range(1, len(self.words)):
                np.bitwise_xor(self.words[w], query_words[w, qi], out=xor)
                np.bitwise_count(xor, out=counts)
                dist += counts
            # the k-th smallest distance from the histogram, then every row up to it
            histogram = np.bincount(dist, minlength=self.bits + 1)
            kth = int(np.searchsorted(np.cumsum(histogram), k))
            candidates = np.flatnonzero(dist <= kth)            # ascending rows
            # a stable sort by distance keeps ascending rows within a distance
            rows = candidates[np.argsort(dist[candidates], kind="stable")[:k]]
            out_r[qi] = rows
            out_d[qi] = dist[rows]
        return out_d, out_r


class _FaissFlat:
    """Exact search with faiss.IndexBinaryFlat: search() for the k-th distance, range_search
    for every item up to it, then sort by (distance, row)."""

    def __init__(self, packed: np.ndarray, bits: int):
        self.faiss = _import_faiss('backend="faiss"')
        self.index = self.faiss.IndexBinaryFlat(8 * packed.shape[1])
        self.index.add(packed)

    def search(self, queries: np.ndarray, k: int):
        out_d = np.empty((len(queries), k), dtype=np.int32)
        out_r = np.empty((len(queries), k), dtype=np.int64)
        block = max(1, _RESULTS_PER_BLOCK // k)
        for start in range(0, len(queries), block):
            stop = min(start + block, len(queries))
            with _faiss_threads(self.faiss, stop - start):
                kth = self.index.search(queries[start:stop], k)[0][:, -1]
            for radius in np.unique(kth):            # queries sharing a k-th distance together
                members = np.flatnonzero(kth == radius)
                with _faiss_threads(self.faiss, len(members)):
                    lims, dist, rows = self.index.range_search(queries[start + members],
                                                               int(radius) + 1)
                for j, qi in enumerate(start + members):
                    d, r = dist[lims[j]:lims[j + 1]], rows[lims[j]:lims[j + 1]]
                    if len(r) < k:
                        raise RuntimeError("faiss range_search returned fewer items than "
                                           "search(); its radius semantics changed?")
                    order = np.lexsort((r, d))[:k]
                    out_d[qi], out_r[qi] = d[order], r[order]
        return out_d, out_r


class _FaissApprox:
    """IndexBinaryHNSW or IndexBinaryIVF; results re-sorted by (distance, row), misses last."""

    def __init__(self, faiss, index, kind: str):
        self.faiss, self.index, self.kind = faiss, index, kind

    def set_search_params(self, hnsw_ef_search: int, ivf_nprobe: int) -> None:
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = hnsw_ef_search
        else:
            self.index.nprobe = min(ivf_nprobe, self.index.nlist)

    def params(self) -> dict:
        if self.kind == "hnsw":
            hnsw = self.index.hnsw
            return {"hnsw_m": int(hnsw.nb_neighbors(1)),
                    "hnsw_ef_construction": int(hnsw.efConstruction),
                    "hnsw_ef_search": int(hnsw.efSearch)}
        return {"ivf_nlist": int(self.index.nlist), "ivf_nprobe": int(self.index.nprobe)}

    def search(self, queries: np.ndarray, k: int):
        with _faiss_threads(self.faiss, len(queries)):
            dist, rows = self.index.search(queries, k)
        dist[rows < 0] = MISSING
        order = np.lexsort((rows, dist), axis=1)
        return (np.take_along_axis(dist, order, 1).astype(np.int32),
                np.take_along_axis(rows, order, 1).astype(np.int64))


def _build_approx(packed, kind, hnsw_m, hnsw_ef_construction, ivf_nlist, seed) -> _FaissApprox:
    faiss = _import_faiss(f'kind="{kind}"')
    d, n = 8 * packed.shape[1], len(packed)
    training = None                                   # (samples, W) codes for IVF's k-means
    if kind == "hnsw":
        index = faiss.IndexBinaryHNSW(d, hnsw_m)
        index.hnsw.efConstruction = hnsw_ef_construction
    else:
        # ~4 sqrt(N) lists with >= 39 points each (faiss's k-means minimum); the k-means
        # runs on 40 points per list: its cost grows with lists x points
        nlist = ivf_nlist or max(1, min(int(4 * math.sqrt(n)), n // 39, 65536))
        if nlist > n:
            raise ValueError(f"ivf_nlist={nlist} exceeds the {n} codes")
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(d), d, nlist)
        sample = np.random.default_rng(seed).choice(n, size=min(n, 40 * nlist), replace=False)
        training = packed[np.sort(sample)]
    # IVF builds on one thread (see _faiss_threads); HNSW's add parallelises well
    with _faiss_threads(faiss, 1 if kind == "ivf" else n // _BUILD_ROWS_PER_THREAD):
        if training is not None:
            index.train(training)
        index.add(packed)
    return _FaissApprox(faiss, index, kind)


class HammingSearcher:
    """k-NN by Hamming distance over N packed codes (N, ceil(bits/8)) uint8.

    kind: "flat" (exact), "hnsw" or "ivf" (approximate, faiss only).
    backend: "auto" (faiss when installed, else numpy), "faiss" or "numpy".
    search(queries (Q, ceil(bits/8)) uint8, k) -> distances (Q, k') int32,
    rows (Q, k') int64, k' = min(k, N), each row ordered by (distance, row);
    approximate kinds may miss items: row -1 with distance MISSING, last.
    """

    def __init__(self, packed, bits: int, kind: str = "flat", backend: str = "auto", *,
                 hnsw_m: int = 32, hnsw_ef_construction: int = 40,
                 hnsw_ef_search: int = HNSW_EF_SEARCH, ivf_nlist: int | None = None,
                 ivf_nprobe: int = IVF_NPROBE, seed: int = 0):
        self._setup(packed, bits, kind, backend)
        if kind == "flat":
            self._impl = (_FaissFlat if self.backend == "faiss" else _NumpyFlat)(self.packed, bits)
        else:
            self._impl = _build_approx(self.packed, kind, hnsw_m, hnsw_ef_construction,
                                       ivf_nlist, seed)
            self._impl.set_search_params(hnsw_ef_search, ivf_nprobe)

    @classmethod
    def from_serialized(cls, packed, bits: int, kind: str, blob, *, hnsw_ef_search: int = HNSW_EF_SEARCH,
                        ivf_nprobe: int = IVF_NPROBE) -> "HammingSearcher":
        """An approximate searcher from serialize()'s bytes, built over these same codes."""
        self = cls.__new__(cls)
        self._setup(packed, bits, kind, "faiss")
        if kind == "flat":
            raise ValueError('kind="flat" has nothing stored; build it with HammingSearcher()')
        faiss = _import_faiss(f'a stored kind="{kind}" index')
        index = faiss.deserialize_index_binary(np.ascontiguousarray(blob, dtype=np.uint8))
        expected = faiss.IndexBinaryHNSW if kind == "hnsw" else faiss.IndexBinaryIVF
        if not isinstance(index, expected) or index.d != 8 * self.packed.shape[1] \
                or index.ntotal != self.size:
            raise ValueError(f"the stored index ({type(index).__name__}, d={index.d}, "
                             f"{index.ntotal} items) does not match kind={kind!r} over "
                             f"{self.size} codes of {8 * self.packed.shape[1]} padded bits")
        self._impl = _FaissApprox(faiss, index, kind)
        self._impl.set_search_params(hnsw_ef_search, ivf_nprobe)
        return self

    def _setup(self, packed, bits, kind, backend) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if backend not in ("auto", "faiss", "numpy"):
            raise ValueError(f'backend must be "auto", "faiss" or "numpy", got {backend!r}')
        if kind != "flat" and backend == "numpy":
            raise ValueError(f'kind="{kind}" is approximate and needs faiss; the numpy '
                             'backend does exact (kind="flat") search only')
        self.bits = operator.index(bits)
        self.packed = _check_packed(packed, self.bits, "packed")
        self.kind = kind
        self.backend = ("faiss" if faiss_available() else "numpy") if backend == "auto" else backend

    @property
    def size(self) -> int:
        return len(self.packed)

    @property
    def exact(self) -> bool:
        return self.kind == "flat"

    def describe(self) -> dict:
        """kind, backend and the approximate index's parameters (JSON-serialisable)."""
        extra = {} if self.exact else self._impl.params()
        return {"kind": self.kind, "backend": self.backend, **extra}

    def serialize(self) -> np.ndarray:
        """(S,) uint8 bytes of the approximate faiss index (for CodeIndex.approximate)."""
        if self.exact:
            raise ValueError('kind="flat" has nothing to serialise (it is rebuilt from the codes)')
        return _import_faiss("serialize").serialize_index_binary(self._impl.index)

    def search(self, queries, k: int):
        queries = _check_packed(queries, self.bits, "queries")
        if isinstance(k, bool) or operator.index(k) < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        k = min(operator.index(k), self.size)
        if k == 0 or len(queries) == 0:
            return np.empty((len(queries), k), np.int32), np.empty((len(queries), k), np.int64)
        return self._impl.search(queries, k)


def make_searcher(index: CodeIndex, modality: str, kind: str | None = None,
                  backend: str = "auto", **params) -> HammingSearcher:
    """A searcher over index.codes[modality]: the stored approximate index when it is of the
    requested kind (kind=None: whatever is stored) and faiss is installed, else a new one.

    kind=None with a stored index but no faiss (or backend="numpy") falls back to
    exact numpy search, with a warning; asking for "hnsw"/"ivf" explicitly without faiss raises
    FaissUnavailableError. params go to HammingSearcher (search-time ones
    override the stored index's).
    """
    if modality not in index.codes:
        raise KeyError(f"no codes for modality {modality!r}; the index has {sorted(index.codes)}")
    packed = index.codes[modality]
    stored = index.approximate.get(modality)
    stored_params = dict(index.meta.get("approximate", {}).get(modality, {})) if stored is not None else {}
    stored_kind = stored_params.get("kind")
    wanted = kind or stored_kind or "flat"
    if wanted != "flat" and wanted == stored_kind:
        if backend != "numpy" and faiss_available():
            search_params = {key: params.get(key, stored_params.get(key, default))
                             for key, default in (("hnsw_ef_search", HNSW_EF_SEARCH),
                                                  ("ivf_nprobe", IVF_NPROBE))}
            return HammingSearcher.from_serialized(packed, index.bits, wanted, stored,
                                                   **search_params)
        if kind is None and backend != "faiss":
            reason = "backend='numpy' was asked for" if backend == "numpy" else "faiss is not installed"
            warnings.warn(f"the index stores a {stored_kind} index for {modality!r} but {reason}; "
                          "using exact numpy search", stacklevel=2)
            return HammingSearcher(packed, index.bits, "flat", backend="numpy")
    return HammingSearcher(packed, index.bits, wanted, backend, **params)


def store_approximate(index: CodeIndex, modality: str, searcher: HammingSearcher) -> None:
    """Put an approximate searcher built over index.codes[modality] into `index` (in memory;
    save_index writes it): the bytes in index.approximate, kind and parameters in
    index.meta["approximate"][modality]."""
    packed = index.codes.get(modality)
    if packed is None or searcher.size != len(packed) or searcher.bits != index.bits \
            or not np.array_equal(searcher.packed, packed):
        raise ValueError(f"the searcher was not built over index.codes[{modality!r}]")
    index.approximate[modality] = searcher.serialize()
    entry = searcher.describe()
    entry.pop("backend")
    index.meta.setdefault("approximate", {})[modality] = entry
