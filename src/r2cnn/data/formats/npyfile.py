"""Reading ``.npz`` archives without running code from them.

sketch-rnn's files hold object arrays (one stroke-3 array per sketch), which numpy stores as pickles, and a
pickle can call anything: ``np.load(allow_pickle=True)`` on a crafted file runs it, and on a plain pickle
renamed ``.npz`` too. Here an archive is opened as a zip (nothing else is accepted), numeric members are read
from their bytes, and object members go through :class:`_ArrayUnpickler`, which knows these names only:
numpy's ndarray reconstruction (``ndarray`` and ``_reconstruct``, or protocol 5's ``_frombuffer``), ``dtype``
for plain numbers and objects, and ``_codecs.encode`` to latin-1 (how protocol 2 spells bytes). It calls none of numpy's
unpickling code: each array is rebuilt from checked parts (a shape, a plain dtype, bytes of exactly the right
length, or a list of elements for an object array). Anything else is :class:`RefusedPickle`. Memory is bounded
before it is spent: a member's header (shape, dtype) can be read alone, and an object member's pickle may be
read in pieces no larger than a caller's bound (:class:`PieceTooLarge`).
"""

from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path

import numpy as np


class RefusedPickle(ValueError):
    """A pickle asked for something other than plain numpy arrays; ``str()`` says what."""


class PieceTooLarge(ValueError):
    """An object member's pickle asked to read more bytes at once than :class:`NpzArchive`'s ``max_piece``."""


# dtype(spec) specs a plain numeric or object array pickles with; structured, string and datetime dtypes are refused.
_DTYPE_SPECS = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "O4", "O8"}


class _Ndarray:
    """Stands for ``numpy.ndarray`` in a pickle: only ever the first argument of ``_reconstruct``."""

    __slots__ = ()

    def __setstate__(self, state):
        raise RefusedPickle("state for numpy.ndarray itself")


class _Dtype:
    """``numpy.dtype(spec, align, copy)`` followed by its pickled state (``BUILD``)."""

    def __init__(self, spec, align=False, copy=False):
        if not isinstance(spec, str) or spec not in _DTYPE_SPECS:
            raise RefusedPickle(f"dtype {str(spec)[:20]!r} is not a plain number or object type")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state):
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata]); numpy's own values
        # for the spec are kept, only the byte order is taken from the state.
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[1] in ("<", ">", "|", "=")
                and state[2:5] == (None, None, None) and (len(state) == 8 or state[8] is None)):
            raise RefusedPickle("dtype state of a structured or unusual type")
        if state[1] in ("<", ">") and self.dtype.itemsize > 1 and self.dtype.kind != "O":
            self.dtype = self.dtype.newbyteorder(state[1])


def _shape(shape) -> tuple[int, ...]:
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise RefusedPickle(f"array shape {str(shape)[:40]}")
    return shape


def _from_bytes(data, dtype: np.dtype, shape: tuple[int, ...], fortran: bool) -> np.ndarray:
    if isinstance(data, str):  # Python 2's str, read as latin-1
        data = data.encode("latin-1")
    if not isinstance(data, (bytes, bytearray)) or len(data) != math.prod(shape) * dtype.itemsize:
        raise RefusedPickle(f"array data does not match shape {shape} of {dtype}")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


class _Array:
    """``_reconstruct(ndarray, ...)`` followed by ``__setstate__((version, shape, dtype, fortran, data))``; the
    finished array is ``value``. An object array's elements are other ``_Array``s (resolved here) or plain
    Python values (lists, numbers, strings), which the sketch readers then refuse as strokes."""

    value: np.ndarray | None = None

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # (version, ...) since numpy 1.x; 4-tuples are older
        if self.value is not None or not (isinstance(state, tuple) and len(state) == 4
                                          and isinstance(state[1], _Dtype)):
            raise RefusedPickle("array state")
        shape, dtype, fortran, data = _shape(state[0]), state[1].dtype, bool(state[2]), state[3]
        if dtype.kind != "O":
            self.value = _from_bytes(data, dtype, shape, fortran)
            return
        if not isinstance(data, list) or len(data) != math.prod(shape):
            raise RefusedPickle(f"object array data does not match shape {shape}")
        flat = np.empty(len(data), dtype=object)  # element by element: np.array would stack equal shapes
        for i, item in enumerate(data):
            if isinstance(item, _Array):
                if item.value is None:
                    raise RefusedPickle("array used before it was built")
                item = item.value
            elif isinstance(item, (_Dtype, _Ndarray)):
                raise RefusedPickle("a dtype as an array element")
            flat[i] = item
        self.value = flat.reshape(shape, order="F" if fortran else "C")


def _reconstruct(subtype, shape, dtype_code) -> _Array:
    if not isinstance(subtype, _Ndarray):
        raise RefusedPickle("an ndarray subclass")
    return _Array()


def _frombuffer(buffer, dtype, shape, order) -> _Array:
    if not isinstance(dtype, _Dtype) or dtype.dtype.kind == "O" or order not in ("C", "F"):
        raise RefusedPickle("protocol-5 array of an object or unusual type")
    array = _Array()
    array.value = _from_bytes(bytes(buffer) if isinstance(buffer, memoryview) else buffer, dtype.dtype,
                              _shape(shape), order == "F")
    return array


def _latin1(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedPickle(f"_codecs.encode to {str(encoding)[:20]!r}")
    return text.encode("latin-1")


class _Callable:
    """What a pickle gets for an allowed name: callable, but neither a class (so ``NEWOBJ`` cannot bypass the
    checks) nor open to ``BUILD`` (so a pickle cannot change it for the next file)."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args):
        return self._fn(*args)

    def __setstate__(self, state):
        raise RefusedPickle("state for a function")


_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _Callable(_reconstruct),  # numpy 1.x (and sketch-rnn's files)
    ("numpy._core.multiarray", "_reconstruct"): _Callable(_reconstruct),  # numpy 2.x
    ("numpy.core.numeric", "_frombuffer"): _Callable(_frombuffer),  # protocol 5
    ("numpy._core.numeric", "_frombuffer"): _Callable(_frombuffer),
    ("numpy", "ndarray"): _Ndarray(),
    ("numpy", "dtype"): _Callable(_Dtype),
    ("_codecs", "encode"): _Callable(_latin1),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        found = _GLOBALS.get((module, name))
        if found is None:
            raise RefusedPickle(f"{module}.{name}"[:60] + " is not part of a numpy array")
        return found


class _BoundedReader:
    """A member's stream as the unpickler sees it, refusing any single read of more than ``limit`` bytes. The
    unpickler asks for a bytes object's (or a frame's) full length before reading it, so a huge declared length
    is refused before it is decompressed, whatever the archive's compression ratio."""

    def __init__(self, f, limit: int):
        self._f, self._limit = f, limit

    def _check(self, n: int) -> None:
        if n < 0 or n > self._limit:
            raise PieceTooLarge(f"a pickled piece of at least {n} bytes, over {self._limit}")

    def read(self, n: int = -1) -> bytes:
        self._check(n)
        return self._f.read(n)

    def readinto(self, buffer) -> int:
        self._check(len(buffer))
        return self._f.readinto(buffer)

    def readline(self) -> bytes:
        line = self._f.readline(self._limit + 1)
        self._check(len(line))
        return line

    def peek(self, n: int = 1) -> bytes:  # lets the unpickler read ahead in blocks: as fast as without the bound
        return self._f.peek(min(n, self._limit))


def _unpickle_array(f, shape: tuple[int, ...]) -> np.ndarray:
    try:
        result = _ArrayUnpickler(f, encoding="latin1").load()
    except RefusedPickle:
        raise
    except TypeError as e:  # e.g. calling the ndarray stand-in: a pickle numpy would not write
        raise RefusedPickle(str(e)[:60]) from None
    if not isinstance(result, _Array) or result.value is None or result.value.shape != shape:
        raise RefusedPickle("the pickle is not the array its header announces")
    return result.value


def _read_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from the start of a ``.npy`` stream, which is left at the data."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f".npy format version {version} is not read here")


class NpzArchive:
    """An ``.npz`` file opened for reading: ``archive.files`` are the member names (without ``.npy``),
    ``archive.header(name)`` gives one's shape and dtype and ``archive[name]`` reads one. Raises
    ``zipfile.BadZipFile`` (not a zip), :class:`RefusedPickle` (an object member that is more than plain arrays),
    :class:`PieceTooLarge` (an object member's pickle reading more than ``max_piece`` bytes at once, e.g. one
    element's data; ``None``: no bound) or ``ValueError`` (a damaged member)."""

    def __init__(self, path: str | Path, max_piece: int | None = None):
        self._zip = zipfile.ZipFile(path)
        self._members = {n[:-4] if n.endswith(".npy") else n: n for n in self._zip.namelist()}
        self._max_piece = max_piece
        self.files = list(self._members)

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """A member's shape and dtype, read from its header alone (its data is not decompressed)."""
        with self._zip.open(self._members[name]) as f:
            shape, _, dtype = _read_header(f)
        return shape, dtype

    def __getitem__(self, name: str) -> np.ndarray:
        info = self._zip.getinfo(self._members[name])
        with self._zip.open(info) as f:
            shape, fortran, dtype = _read_header(f)
            if dtype.hasobject:
                if dtype.kind != "O":
                    raise RefusedPickle(f"structured dtype with objects {dtype}")
                return _unpickle_array(f if self._max_piece is None else _BoundedReader(f, self._max_piece), shape)
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > info.file_size:  # before allocating what a damaged header claims
                raise ValueError(f"header announces {nbytes} bytes, the member has {info.file_size}")
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise ValueError(f"truncated: {len(data)} of {nbytes} bytes")
            return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> "NpzArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
