"""Append-only ``.npy`` files for building a store in bounded memory, and the narrowest dtype for its points."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


_CHUNK = 1 << 22  # rows per chunk when rewriting a file


NPY_HEADER_BYTES = 128  # fixed, so the shape can be rewritten in place when appending ends


def npy_header(dtype: np.dtype, shape: tuple) -> bytes:
    """A version-1.0 ``.npy`` header padded to exactly ``NPY_HEADER_BYTES`` (numpy pads with spaces too)."""
    d = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
    body = d.encode("latin1")
    pad = NPY_HEADER_BYTES - 10 - len(body) - 1
    assert pad >= 0, "npy header too long"
    return b"\x93NUMPY\x01\x00" + (NPY_HEADER_BYTES - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"


class NpyAppender:
    """Appends rows to a ``.npy`` file of shape ``(n, *row_shape)`` without holding them in memory.

    ``widen(dtype)`` rewrites what was written so far with a wider dtype (at most a few times per build: points go
    uint8 -> int16 -> float32 only when the data needs it).
    """

    def __init__(self, path: Path, dtype, row_shape: tuple = (), *, rows: int | None = None):
        """A new file; or, with ``rows``, the existing file cut back to its first ``rows`` rows (of ``dtype``) and
        appended to (resuming an interrupted build from its last checkpoint)."""
        self.path, self.dtype, self.row_shape = Path(path), np.dtype(dtype), tuple(row_shape)
        if rows is None:
            self.rows = 0
            self._f = open(self.path, "wb")
            self._f.write(npy_header(self.dtype, (0, *self.row_shape)))
            return
        self.rows = int(rows)
        size = NPY_HEADER_BYTES + self.rows * self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))
        if self.path.stat().st_size < size:
            raise OSError(f"{self.path}: shorter than its checkpoint ({self.path.stat().st_size} < {size} bytes)")
        os.truncate(self.path, size)
        self._f = open(self.path, "ab")

    def sync(self) -> None:
        """Flush what was appended to the disk (a checkpoint: it survives a crash or ``kill -9``)."""
        self._f.flush()
        os.fsync(self._f.fileno())

    def append(self, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr, dtype=self.dtype).reshape(-1, *self.row_shape)
        self._f.write(arr.tobytes())
        self.rows += len(arr)

    def widen(self, dtype) -> None:
        self._f.close()
        old = np.memmap(self.path, dtype=self.dtype, mode="r", offset=NPY_HEADER_BYTES,
                        shape=(self.rows, *self.row_shape)) if self.rows else None
        tmp = self.path.with_suffix(".widen")
        with open(tmp, "wb") as f:
            f.write(npy_header(dtype, (0, *self.row_shape)))
            for a in range(0, self.rows, _CHUNK):
                f.write(np.ascontiguousarray(old[a:a + _CHUNK], dtype=dtype).tobytes())
        del old
        os.replace(tmp, self.path)
        self.dtype = np.dtype(dtype)
        self._f = open(self.path, "ab")

    def close(self) -> None:
        self._f.close()
        with open(self.path, "r+b") as f:  # not the append-mode handle: its writes always go to the end
            f.write(npy_header(self.dtype, (self.rows, *self.row_shape)))


def convert_npy(src: Path, dst: Path, fn, dtype) -> None:
    """Write ``fn(chunk)`` for each chunk of ``src`` into a new ``.npy`` ``dst`` of ``dtype`` (bounded memory)."""
    a = np.load(src, mmap_mode="r")
    out = np.lib.format.open_memmap(dst, mode="w+", dtype=dtype, shape=a.shape)
    for s in range(0, len(a), _CHUNK):
        out[s:s + _CHUNK] = fn(np.asarray(a[s:s + _CHUNK]))
    out.flush()
    del out, a


def points_dtype(chunk: np.ndarray) -> np.dtype:
    """The narrowest of uint8, int16, float32 that holds ``chunk`` (float32) exactly."""
    if len(chunk) == 0:
        return np.dtype(np.uint8)
    if not np.array_equal(chunk, np.round(chunk)):
        return np.dtype(np.float32)
    lo, hi = float(chunk.min()), float(chunk.max())
    if lo >= 0 and hi <= 255:
        return np.dtype(np.uint8)
    if lo >= -32768 and hi <= 32767:
        return np.dtype(np.int16)
    return np.dtype(np.float32)


_WIDTH = {np.dtype(np.uint8): 0, np.dtype(np.int16): 1, np.dtype(np.float32): 2}


def wider(a: np.dtype, b: np.dtype) -> np.dtype:
    return a if _WIDTH[a] >= _WIDTH[b] else b

