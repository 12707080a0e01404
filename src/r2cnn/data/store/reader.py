"""Reading a packed, memory-mapped sketch store: :class:`SketchStore`, the directory format it reads.

A store is a directory:

- ``points.npy``  ``(P, 3)`` x, y, pen_end of every sketch concatenated, in the *source* coordinates, with the
  narrowest dtype that holds them exactly: ``uint8`` (QuickDraw simplified, 0..255), ``int16`` (integral
  coordinates in range, e.g. sketch-rnn ``.npz`` after summing the deltas), else ``float32`` (raw QuickDraw,
  SVG). 50M QuickDraw sketches of about 50 points are then about 7.5 GB instead of 30 GB as float32.
- ``offsets.npy`` int64 ``(N+1,)``: sketch i is ``points[offsets[i]:offsets[i+1]]``.
- ``labels.npy``  int16 (int32 past 32,767 classes) ``(N,)``: index into ``manifest["classes"]`` (sorted names).
- ``key_ids.npy`` ``(N,)``: int64 (-1 = unknown) when every key_id is a plain non-negative integer (QuickDraw),
  else fixed-width UTF-8 bytes (b"" = unknown).
- ``splits.npy``  int8 ``(N,)``: 0 train, 1 valid, 2 test, -1 unused (past the per-class split sizes); or, for a
  k-fold store, ``folds.npy`` int8 ``(N,)`` (fold of each sketch) and ``fold_valid.npy`` uint8 ``(N,)`` (bit k set:
  the sketch is in the validation part when fold k is the test fold).
- ``manifest.json``, written last: counts per split and class, the classes, the options, and each source's size,
  mtime and fingerprint. A directory without a complete manifest is not a store.

Opening a store checks the manifest and every array's dtype and shape (and the class indices) against each
other, so a truncated or damaged file is a one-line error naming it; ``prepare`` rebuilds such a store instead of
calling it up to date. Splits and folds: :mod:`r2cnn.data.store.splits`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np

from r2cnn.data.store.splits import SPLIT_CODE
from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch


STORE_VERSION = 1


MANIFEST = "manifest.json"


# Manifest fields a reader relies on, and their types.
_MANIFEST_FIELDS = {"num_sketches": int, "num_points": int, "kind": str, "classes": list, "counts": dict,
                    "options": dict, "points_dtype": str}


def _read_manifest(path: Path) -> dict:
    mpath = path / MANIFEST
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        if not path.exists():
            raise R2CNNError(f"{path}: does not exist (build a store there with `r2cnn prepare SOURCES --out "
                             f"{path}`)") from None
        raise R2CNNError(f"{path}: not a sketch store (no {MANIFEST}; an interrupted `r2cnn prepare` "
                         "leaves none)") from None
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
        raise R2CNNError(f"{mpath}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or not manifest.get("complete") \
            or manifest.get("store_version") != STORE_VERSION:
        version = manifest.get("store_version") if isinstance(manifest, dict) else None
        raise R2CNNError(f"{mpath}: incomplete store or store version {version} (this r2cnn reads "
                         f"{STORE_VERSION}); re-run prepare")
    wrong = [k for k, t in _MANIFEST_FIELDS.items() if type(manifest.get(k)) is not t]
    kfold = manifest.get("kind") == "kfold"
    if not wrong and (manifest["kind"] not in ("splits", "kfold") or manifest["num_sketches"] < 0
                      or not all(isinstance(c, str) for c in manifest["classes"])
                      or (kfold and type(manifest["options"].get("folds")) is not int)):
        wrong = ["kind/num_sketches/classes/options.folds"]
    if wrong:
        raise R2CNNError(f"{mpath}: damaged manifest (missing or wrong: {', '.join(wrong)}); "
                         "run `r2cnn prepare` again to rebuild the store")
    return manifest


class SketchStore:
    """A prepared store, memory-mapped and checked on opening (see the module docstring). Pickles as its path
    (cheap for DataLoader workers) and maps the files again where it is unpickled.

    ``store[i]`` is a :class:`Sketch` in source coordinates (float32), ``label`` the int class index and ``meta``
    ``{"index": i, "key_id": ...}`` (key_id only when known). ``store.classes`` are the class names.
    """

    def __init__(self, path: str | Path, *, check_labels: bool = True):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        self.classes: list[str] = list(self.manifest["classes"])
        self._arrays: dict[str, np.ndarray] = {}
        self._index_cache: dict[tuple, np.ndarray] = {}
        self._check_arrays(check_labels)

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"], check_labels=False)  # a data-loader worker: the trainer has checked them

    def _array(self, name: str) -> np.ndarray:
        a = self._arrays.get(name)
        if a is None:
            try:
                a = np.load(self.path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as e:  # missing, truncated (mmap longer than the file), garbage
                raise self._damaged(name, f"{type(e).__name__}: {e}") from None
            self._arrays[name] = a
        return a

    def _damaged(self, name: str, what: str) -> R2CNNError:
        return R2CNNError(f"{self.path / (name + '.npy')}: damaged store file ({what}); "
                          "run `r2cnn prepare` again to rebuild the store")

    def _check_arrays(self, check_labels: bool) -> None:
        """Every array's dtype and shape against the manifest, the offsets' ends, and (``check_labels``, one pass
        over the labels) the class indices: a damaged file fails here, in one line, not as an IndexError later."""
        n, p = int(self.manifest["num_sketches"]), int(self.manifest["num_points"])
        expect = {"points": ((p, 3), "u1 i2 f4"), "offsets": ((n + 1,), "i8"), "labels": ((n,), "i2 i4"),
                  "key_ids": ((n,), "i8 S")}
        expect.update({"folds": ((n,), "i1"), "fold_valid": ((n,), "u1")} if self.is_kfold else
                      {"splits": ((n,), "i1")})
        for name, (shape, dtypes) in expect.items():
            a = self._array(name)
            code = a.dtype.str[1:] if a.dtype.kind != "S" else "S"
            if a.shape != shape or code not in dtypes.split():
                raise self._damaged(name, f"{a.dtype} {a.shape}, expected {dtypes} {shape}")
        offsets = self.offsets
        if offsets[0] != 0 or offsets[-1] != p:
            raise self._damaged("offsets", f"offsets run from {offsets[0]} to {offsets[-1]}, expected 0 to {p}")
        if check_labels and n:
            labels = self.labels
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= len(self.classes):
                raise self._damaged("labels", f"class indices {lo}..{hi} for {len(self.classes)} classes")

    @property
    def points(self) -> np.ndarray:
        """``(P, 3)`` memory-mapped points in the stored dtype."""
        return self._array("points")

    @property
    def offsets(self) -> np.ndarray:
        return self._array("offsets")

    @property
    def labels(self) -> np.ndarray:
        return self._array("labels")

    @property
    def key_ids(self) -> np.ndarray:
        return self._array("key_ids")

    @property
    def is_kfold(self) -> bool:
        return self.manifest["kind"] == "kfold"

    @property
    def num_folds(self) -> int | None:
        return self.manifest["options"]["folds"]

    @property
    def test_sealed(self) -> bool:
        """A tuning view (:func:`r2cnn.experiments.protocols.subset_view` with ``seal_test``): it does not give out
        the indices of its test split, nor of the "unused" and "all" sets that would hold them."""
        return bool(self.manifest.get("sealed_test"))

    def __len__(self) -> int:
        return int(self.manifest["num_sketches"])

    def sketch_points(self, i: int) -> np.ndarray:
        """float32 ``(n, 3)`` points of sketch ``i`` (a fresh array)."""
        o = self.offsets
        return np.asarray(self.points[int(o[i]):int(o[i + 1])], dtype=np.float32)

    def key_id(self, i: int):
        k = self.key_ids[i]
        if self.key_ids.dtype.kind == "i":
            return str(int(k)) if k >= 0 else None
        return k.decode("utf-8", "surrogatepass") or None

    def __getitem__(self, i: int) -> Sketch:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"sketch index {i} out of range for a store of {len(self)}")
        i %= len(self)
        meta = {"index": i}
        key = self.key_id(i)
        if key is not None:
            meta["key_id"] = key
        return Sketch(self.sketch_points(i), int(self.labels[i]), meta)

    def __iter__(self) -> Iterator[Sketch]:
        for i in range(len(self)):
            yield self[i]

    def indices(self, split: str, fold: int | None = None) -> np.ndarray:
        """int64 indices of ``split`` ("train", "valid", "test"; also "unused" and "all").

        For a k-fold store, ``fold=k`` (default 0) makes fold k the test split; validation is a seeded part of the
        other folds (``manifest["options"]["fold_valid_fraction"]`` per class) and train is the rest. A store whose
        test split is sealed (:attr:`test_sealed`) raises for "test", "unused" and "all".
        """
        if self.test_sealed and split in ("test", "unused", "all"):
            raise R2CNNError(f"{self.path}: a tuning view whose test split is sealed: the {split!r} sketches are not "
                             f"given out (tuning reports the validation split; the test split is never read)")
        if split == "all":
            return np.arange(len(self), dtype=np.int64)
        key = (split, fold)
        if key not in self._index_cache:
            self._index_cache[key] = self._indices(split, fold)
        return self._index_cache[key]

    def _indices(self, split: str, fold: int | None) -> np.ndarray:
        if not self.is_kfold:
            if fold is not None:
                raise R2CNNError(f"{self.path}: fold={fold} given, but this store has fixed splits, not folds")
            codes = {**SPLIT_CODE, "unused": -1}
            if split not in codes:
                raise R2CNNError(f"unknown split {split!r}: choose from train, valid, test, unused, all")
            return np.flatnonzero(self._array("splits") == codes[split]).astype(np.int64)
        k = 0 if fold is None else int(fold)
        if not 0 <= k < self.num_folds:
            raise R2CNNError(f"{self.path}: fold {k} out of range (the store has {self.num_folds} folds)")
        folds = self._array("folds")
        in_valid = (self._array("fold_valid") >> k) & 1 == 1
        masks = {"test": folds == k, "valid": (folds != k) & in_valid, "train": (folds != k) & ~in_valid}
        if split not in masks:
            raise R2CNNError(f"unknown split {split!r} for a k-fold store: choose from train, valid, test, all")
        return np.flatnonzero(masks[split]).astype(np.int64)

    def summary(self) -> str:
        """A few lines: size, dtype, classes and counts per split (or fold)."""
        m = self.manifest
        lines = [f"{self.path}: {m['num_sketches']} sketches, {m['num_points']} points ({m['points_dtype']}), "
                 f"{len(self.classes)} classes"]
        for name, per_class in m["counts"].items():
            total = sum(per_class.values())
            if total or name != "unused":
                lines.append(f"  {name:>7}: {total}")
        if m.get("skipped"):
            lines.append(f"  skipped records: {m['skipped']}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"SketchStore({str(self.path)!r}, n={len(self)}, classes={len(self.classes)})"

