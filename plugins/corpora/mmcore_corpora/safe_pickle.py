"""Reading the pickles (and object ``.npy`` files) that feature releases ship, without running code.

Unpickling calls whatever callables a file names, so a plain ``pickle.load`` of a downloaded
file runs the file's code. The corpora we read (the MMSA ``*.pkl`` features, MMIN's
``int2name.npy``) hold nothing but numpy arrays, numpy scalars, strings and builtin containers,
so the unpickler here resolves exactly the globals those need and refuses every other name
with a ``DataError`` naming it. Containers (dict, list, tuple, str, bytes, numbers) are built by
pickle opcodes, not globals; sets and ``bytes`` in protocol 2 need the few builtins listed.
"""

from __future__ import annotations

import builtins
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from mmcore.errors import DataError

from mmcore.data import DOCS
from mmcore.paths import is_readable_kind


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What protocol-2 pickles call (``_codecs.encode(s, 'latin1')``) to rebuild ``bytes``."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise DataError(f"refusing _codecs.encode with encoding {encoding!r} in a pickle")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    """The callables numpy's own pickles name, taken from numpy itself so that both the
    ``numpy.core`` (numpy 1.x) and ``numpy._core`` (numpy 2.x) spellings resolve here."""
    reconstruct = np.zeros(1).__reduce__()[0]  # multiarray._reconstruct (protocols 2-4)
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numeric._frombuffer (protocol 5)
    scalar = np.float64(0).__reduce__()[0]  # multiarray.scalar (numpy scalars)
    table: dict[tuple[str, str], Callable[..., Any]] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{core}.multiarray", "scalar")] = scalar
        table[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return table


def _sized_from_data(kind: type) -> Callable[..., Any]:
    """``bytes``/``bytearray`` built from data only: pickles rebuild them from a ``bytes`` or
    ``str`` argument, while ``bytearray(8 << 30)`` from a 30-byte file would allocate 8 GiB."""

    def build(*args: Any) -> Any:
        if args and not isinstance(args[0], (bytes, bytearray, str)):
            raise DataError(f"refusing {kind.__name__}({type(args[0]).__name__}) in a pickle: only bytes or text rebuild one")
        return kind(*args)

    return build


_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "complex", "bool")

ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    **_numpy_globals(),
    **{(module, name): getattr(builtins, name) for module in ("builtins", "__builtin__") for name in _BUILTINS},
    **{(module, k.__name__): _sized_from_data(k) for module in ("builtins", "__builtin__") for k in (bytes, bytearray)},
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): dict,  # an ordered dict is still just a dict of arrays
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` admits only ``ALLOWED``."""

    def __init__(self, file: BinaryIO, source: str) -> None:
        # latin1 lets numpy arrays pickled under Python 2 load; it only affects py2 ``str``.
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED.get((module, name))
        if found is None:
            raise DataError(
                f"{self.source}: refusing to unpickle {module}.{name}: only numpy arrays, numpy scalars "
                f"and builtin containers are allowed (see {DOCS})"
            )
        return found


def _load_stream(f: BinaryIO, source: str) -> Any:
    try:
        return RestrictedUnpickler(f, source).load()
    except DataError as exc:
        raise exc if str(exc).startswith(source) else DataError(f"{source}: {exc}") from None
    except Exception as exc:  # truncated or corrupt file, wrong format
        raise DataError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def _regular(path: Path) -> None:
    """Refuse a FIFO or device before opening it: reading one would block or never end."""
    if not is_readable_kind(path) or Path(path).is_dir():
        raise DataError(f"{path}: not a regular file (a folder, FIFO, device or socket); expected a data file")


def load_pickle(path: Path) -> Any:
    """The object in a pickle file, admitting only arrays and builtin containers."""
    _regular(path)
    with open(path, "rb") as f:
        return _load_stream(f, str(path))


def load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array; object arrays (pickled after the header) go through the restricted
    unpickler instead of ``np.load(allow_pickle=True)``."""
    _regular(path)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                _shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:  # 2.0 and 3.0 share the header layout
                _shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except Exception as exc:
            raise DataError(f"{path}: not a .npy file ({exc})") from None
        array = _load_stream(f, str(path)) if dtype.hasobject else None
    if array is None:
        try:
            return np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"{path}: unreadable .npy file ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path}: the pickled payload is a {type(array).__name__}, not an array")
    return array
