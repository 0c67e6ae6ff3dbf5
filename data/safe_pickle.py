"""Restricted unpickling of UCMFH's feature files.

``pickle.load`` runs whatever callables a file names, so opening a
downloaded ``train.pkl`` with it is equivalent to running a downloaded
script.  :func:`safe_load_pickle` resolves only the handful of globals that
numpy arrays, dtypes and numpy scalars need; dicts, lists, tuples, strings and
numbers are built by pickle opcodes and need no globals at all.  Any other
global is refused *before* it is called, so nothing in a hostile file runs.
"""

import codecs
import pickle
from pathlib import Path

import numpy as np

from .errors import DataError, describe

try:  # numpy >= 2 keeps its internals in numpy._core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """Stand-in for ``_codecs.encode`` limited to the codec pickle uses.

    Protocol-2 pickles store array bytes as a latin-1 string and rebuild them
    with ``_codecs.encode(s, 'latin1')``; no other codec is needed, so none is
    offered.
    """
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r}")
    return codecs.encode(text, "latin1", errors)


def _allowed_globals():
    """Map (module, name) as written in a pickle to the object it may load.

    Pickles written by numpy 1.x say ``numpy.core``; numpy 2.x writes
    ``numpy._core``.  Both spellings are accepted and resolved to whichever
    module this numpy has, without importing anything by name.
    """
    table = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):
        table[(f"{package}.multiarray", "_reconstruct")] = _multiarray._reconstruct
        table[(f"{package}.multiarray", "scalar")] = _multiarray.scalar
        # Protocol 5 rebuilds contiguous arrays with numeric._frombuffer.
        table[(f"{package}.numeric", "_frombuffer")] = _numeric._frombuffer
    return table


_ALLOWED = _allowed_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose only reachable globals are those in ``_ALLOWED``."""

    def __init__(self, file, source):
        # latin1 lets Python-2 era numpy pickles load; it does not affect
        # pickles written by Python 3.
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._source}: refused to unpickle '{module}.{name}' "
                "(only numpy arrays, dicts, lists and scalars are allowed)"
            ) from None

    def persistent_load(self, pid):
        raise DataError(f"{self._source}: refused to unpickle a persistent id "
                        "(only numpy arrays, dicts, lists and scalars are allowed)")


def _refuse_object_arrays(obj, source):
    """Raise if any array inside ``obj`` has an object (or object-field) dtype.

    Object arrays can only hold what the restricted unpickler allowed, so they
    are not a code-execution risk here, but they are never features and they
    defeat the numeric checks downstream; refusing them keeps the contract
    "plain numeric arrays" simple.  Iterative, so deep nesting cannot blow the
    stack.
    """
    pending = [(obj, "")]
    while pending:
        item, where = pending.pop()
        if isinstance(item, np.ndarray) and item.dtype.hasobject:
            at = f" at {where}" if where else ""
            raise DataError(f"{source}: refused object-dtype array{at} "
                            "(only numeric and string arrays are allowed)")
        if isinstance(item, dict):
            pending.extend((v, f"key {k!r}") for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            pending.extend((v, where) for v in item)


def safe_load_pickle(path):
    """Load a pickle that may contain only numpy arrays, scalars and containers.

    Raises :class:`DataError` (message names the file) for a refused global,
    an object-dtype array, or a file that is not a readable pickle.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            obj = _RestrictedUnpickler(handle, path).load()
    except DataError:
        raise
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    except Exception as exc:  # corrupt/truncated pickles raise many types
        raise DataError(f"{path}: not a readable pickle ({describe(exc)})") from None
    _refuse_object_arrays(obj, path)
    return obj
