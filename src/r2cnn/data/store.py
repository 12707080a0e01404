"""The packed, memory-mapped sketch store built once by ``r2cnn prepare`` and read by the data loader.

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

Splits (``prepare``):

- A record's own split wins: the ``.npz`` files' ``train``/``valid``/``test`` arrays, or a ``train=DIR`` source, or
  ``split_from_folders`` (a ``train``/``valid``/``test`` folder on the path below a source folder).
- Other records (ndjson, bin) are split per class by a seeded hash of their ``key_id`` (of ``folder/file:line`` when
  the record has none): sorted by ``blake2b(key, key=seed)``, the first ``split_sizes[0]`` are train, the next
  valid, then test, the rest unused. Default: the paper's 70K/2.5K/2.5K per class (Sec. 4.1), scaled down
  proportionally for a smaller class. The hash makes the split independent of file order and stable across reruns.
- A store that would have no validation record (say ``train=A test=B``) gets its validation carved out of its
  ``train`` records instead, when ``split_sizes`` asks for one: per class, the records that the hash split with
  ``(TRAIN, VALID, 0)`` would make valid become valid, and all the others stay train. So ``train=A test=B`` with
  ``split_sizes=(9840, 300, 0)`` gives the same valid split as the plain source ``A`` (and, for a class of at
  most 10,140 sketches, the same train split; past that the plain source leaves the rest unused).
- ``folds=K`` (default 3 when any source is SVG, as for TU-Berlin in Sec. 4.1): each class's sketches, in hash
  order, are dealt round-robin into K folds; ``indices(split, fold=k)`` makes fold k the test split and takes the
  first ``fold_valid_fraction`` (by hash order) of the class's other sketches as validation.

Building streams records into append-only files in ``DIR.tmp-*`` and renames the directory when done, so memory
stays bounded (the compact per-sketch arrays for the split, about 20 bytes a sketch, are the only O(N) state) and
a half-built store never looks complete. A rerun whose sources (size, mtime, fingerprint) and options match the
manifest does nothing.

One build at a time: ``prepare`` holds an exclusive ``flock`` on ``.DIR.lock`` beside the store (the directory
itself is replaced, so it cannot carry the lock; the file is removed when the build ends) from the up-to-date check
to the rename; a second ``prepare`` into the same directory says it is waiting, then finds the store up to date or
builds its own. Opening a store checks the manifest and every array's dtype and shape (and the class indices)
against each other, so a truncated or damaged file is a one-line error naming it; ``prepare`` rebuilds such a
store instead of calling it up to date.

Source fingerprint: sha1 of the file size and its first and last MiB. It is fast on 22 GB of ndjson and, together
with size and mtime, catches any ordinary change; an edit that keeps the size, the mtime and both ends is missed
(use ``force=True`` / ``--force`` then).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from r2cnn.data.formats.common import make_folder, replace_durably
from r2cnn.errors import ErrorPolicy, R2CNNError, SketchFormatError
from r2cnn.sketch import Sketch

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; concurrent builds are then the user's to avoid
    fcntl = None

STORE_VERSION = 1
SPLITS = ("train", "valid", "test")
SPLIT_CODE = {"train": 0, "valid": 1, "test": 2}
DEFAULT_SPLIT_SIZES = (70000, 2500, 2500)  # per class, Sec. 4.1 (the sketch-rnn QuickDraw split)
DEFAULT_SVG_FOLDS = 3  # TU-Berlin: 3-fold cross-validation, Sec. 4.1
MANIFEST = "manifest.json"
_FINGERPRINT_BYTES = 1 << 20
_FLUSH_POINTS = 1 << 20  # points buffered before they are written (16 MB as float32 triples)
_CHUNK = 1 << 22  # rows per chunk when rewriting a file
_KEY_CHUNK = 1 << 20  # key_id lines per chunk (Python strings: about 70 MB)


# ---------------------------------------------------------------------------------------------- file helpers
_NPY_HEADER_BYTES = 128  # fixed, so the shape can be rewritten in place when appending ends


def _npy_header(dtype: np.dtype, shape: tuple) -> bytes:
    """A version-1.0 ``.npy`` header padded to exactly ``_NPY_HEADER_BYTES`` (numpy pads with spaces too)."""
    d = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
    body = d.encode("latin1")
    pad = _NPY_HEADER_BYTES - 10 - len(body) - 1
    assert pad >= 0, "npy header too long"
    return b"\x93NUMPY\x01\x00" + (_NPY_HEADER_BYTES - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"


class _NpyAppender:
    """Appends rows to a ``.npy`` file of shape ``(n, *row_shape)`` without holding them in memory.

    ``widen(dtype)`` rewrites what was written so far with a wider dtype (at most a few times per build: points go
    uint8 -> int16 -> float32 only when the data needs it).
    """

    def __init__(self, path: Path, dtype, row_shape: tuple = ()):
        self.path, self.dtype, self.row_shape, self.rows = Path(path), np.dtype(dtype), tuple(row_shape), 0
        self._f = open(self.path, "wb")
        self._f.write(_npy_header(self.dtype, (0, *self.row_shape)))

    def append(self, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr, dtype=self.dtype).reshape(-1, *self.row_shape)
        self._f.write(arr.tobytes())
        self.rows += len(arr)

    def widen(self, dtype) -> None:
        self._f.close()
        old = np.memmap(self.path, dtype=self.dtype, mode="r", offset=_NPY_HEADER_BYTES,
                        shape=(self.rows, *self.row_shape)) if self.rows else None
        tmp = self.path.with_suffix(".widen")
        with open(tmp, "wb") as f:
            f.write(_npy_header(dtype, (0, *self.row_shape)))
            for a in range(0, self.rows, _CHUNK):
                f.write(np.ascontiguousarray(old[a:a + _CHUNK], dtype=dtype).tobytes())
        del old
        os.replace(tmp, self.path)
        self.dtype = np.dtype(dtype)
        self._f = open(self.path, "ab")

    def close(self) -> None:
        self._f.close()
        with open(self.path, "r+b") as f:  # not the append-mode handle: its writes always go to the end
            f.write(_npy_header(self.dtype, (self.rows, *self.row_shape)))


def _convert_npy(src: Path, dst: Path, fn, dtype) -> None:
    """Write ``fn(chunk)`` for each chunk of ``src`` into a new ``.npy`` ``dst`` of ``dtype`` (bounded memory)."""
    a = np.load(src, mmap_mode="r")
    out = np.lib.format.open_memmap(dst, mode="w+", dtype=dtype, shape=a.shape)
    for s in range(0, len(a), _CHUNK):
        out[s:s + _CHUNK] = fn(np.asarray(a[s:s + _CHUNK]))
    out.flush()
    del out, a


def _points_dtype(chunk: np.ndarray) -> np.dtype:
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


def _wider(a: np.dtype, b: np.dtype) -> np.dtype:
    return a if _WIDTH[a] >= _WIDTH[b] else b


def fingerprint(path: Path) -> str:
    """sha1 of the size and the first and last MiB of a file (see the module docstring for why)."""
    size = path.stat().st_size
    h = hashlib.sha1(size.to_bytes(8, "little"))
    with open(path, "rb") as f:
        h.update(f.read(_FINGERPRINT_BYTES))
        if size > _FINGERPRINT_BYTES:
            f.seek(max(_FINGERPRINT_BYTES, size - _FINGERPRINT_BYTES))
            h.update(f.read(_FINGERPRINT_BYTES))
    return h.hexdigest()


def _split_hash(key: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8,
                                          key=int(seed).to_bytes(8, "little", signed=True)).digest(), "little")


def _is_plain_int(s: str) -> bool:
    return s.isascii() and s.isdigit() and (s == "0" or s[0] != "0") and int(s) < 2 ** 63


# ---------------------------------------------------------------------------------------------- sources
def _parse_source(spec: str | Path) -> tuple[Path, str | None]:
    """``PATH`` or ``train=PATH`` / ``valid=PATH`` / ``test=PATH`` (all records of PATH go to that split)."""
    s = str(spec)
    head, sep, tail = s.partition("=")
    if sep and head in SPLIT_CODE and not Path(s).exists():
        return Path(tail), head
    return Path(s), None


def _expand(path: Path, split: str | None, split_from_folders: bool) -> list[tuple[Path, str, str | None]]:
    """``(file, format, split or None)`` for a source file or every sketch file under a source folder."""
    from r2cnn.data.formats import find_sketch_files
    out = []
    for f, fmt in find_sketch_files(path):
        fsplit = split
        if split_from_folders and fsplit is None and f != path:
            fsplit = next((part for part in f.relative_to(path).parts[:-1] if part in SPLIT_CODE), None)
        out.append((f, fmt, fsplit))
    return out


def _describe(files: list[tuple[Path, str, str | None]]) -> list[dict]:
    desc = []
    for f, _, split in files:
        st = f.stat()
        desc.append({"path": str(f.resolve()), "split": split, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                     "fingerprint": fingerprint(f)})
    return desc


# ---------------------------------------------------------------------------------------------- builder
class _Builder:
    """Streams sketches into append-only files in ``tmp``; ``finish`` computes labels, splits and the manifest."""

    def __init__(self, tmp: Path, seed: int):
        self.tmp, self.seed = tmp, seed
        self.class_ids: dict[str, int] = {}
        self.points = _NpyAppender(tmp / "points.npy", np.uint8, (3,))
        self.offsets = _NpyAppender(tmp / "offsets.npy", np.int64)
        self.offsets.append(np.zeros(1, np.int64))
        self.labels = _NpyAppender(tmp / "labels.tmp.npy", np.int32)
        self.hashes = _NpyAppender(tmp / "hashes.tmp.npy", np.uint64)
        self.given = _NpyAppender(tmp / "given.tmp.npy", np.int8)
        self._keys = open(tmp / "key_ids.tmp.txt", "w", encoding="utf-8", errors="surrogatepass")
        self.keys_all_int, self.key_width = True, 1
        self.n, self.n_points = 0, 0
        self._buf: list[np.ndarray] = []
        self._buf_meta: list[tuple[int, int, int, int]] = []  # (length, label id, hash, given split)
        self._buf_points = 0

    def add(self, sketch: Sketch, label: str, key_id: Any, split_key: str, split: str | None) -> None:
        cid = self.class_ids.setdefault(label, len(self.class_ids))
        pts = sketch.points
        self._buf.append(pts)
        self._buf_meta.append((len(pts), cid, _split_hash(split_key, self.seed), SPLIT_CODE[split] if split else -1))
        k = "" if key_id is None else str(key_id).replace("\n", " ")
        self._keys.write(k + "\n")
        if k:
            self.keys_all_int = self.keys_all_int and _is_plain_int(k)
            self.key_width = max(self.key_width, len(k.encode("utf-8", "surrogatepass")))
        self._buf_points += len(pts)
        self.n += 1
        if self._buf_points >= _FLUSH_POINTS:
            self.flush()

    def flush(self) -> None:
        if not self._buf_meta:
            return
        chunk = np.concatenate(self._buf) if self._buf else np.zeros((0, 3), np.float32)
        need = _wider(self.points.dtype, _points_dtype(chunk))
        if need != self.points.dtype:
            self.points.widen(need)
        self.points.append(chunk)
        lengths, cids, hashes, given = zip(*self._buf_meta)
        ends = self.n_points + np.cumsum(np.asarray(lengths, np.int64))
        self.n_points = int(ends[-1])
        self.offsets.append(ends)
        self.labels.append(np.asarray(cids, np.int32))
        self.hashes.append(np.asarray(hashes, np.uint64))
        self.given.append(np.asarray(given, np.int8))
        self._buf, self._buf_meta, self._buf_points = [], [], 0

    def finish(self, *, split_sizes: Sequence[int], folds: int | None, fold_valid_fraction: float) -> dict:
        """Close the files; write labels (sorted class order), key_ids and splits or folds. Returns manifest parts."""
        self.flush()
        for a in (self.points, self.offsets, self.labels, self.hashes, self.given):
            a.close()
        self._keys.close()
        tmp = self.tmp
        classes = sorted(self.class_ids)
        remap = np.empty(max(len(classes), 1), np.int64)
        for new, name in enumerate(classes):
            remap[self.class_ids[name]] = new
        label_dtype = np.int16 if len(classes) <= np.iinfo(np.int16).max else np.int32
        _convert_npy(tmp / "labels.tmp.npy", tmp / "labels.npy", lambda c: remap[c], label_dtype)
        self._write_key_ids()

        labels = np.load(tmp / "labels.npy")  # compact: 2 bytes a sketch
        hashes = np.load(tmp / "hashes.tmp.npy", mmap_mode="r")
        given = np.load(tmp / "given.tmp.npy")
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(len(classes) + 1))
        result: dict[str, Any] = {"classes": classes, "points_dtype": str(self.points.dtype)}
        if folds:
            fold = np.full(self.n, -1, np.int8)
            fold_valid = np.zeros(self.n, np.uint8)
            for c in range(len(classes)):
                idx = order[bounds[c]:bounds[c + 1]]
                idx = idx[np.argsort(hashes[idx], kind="stable")]
                fold[idx] = np.arange(len(idx)) % folds
                for k in range(folds):
                    rest = idx[fold[idx] != k]
                    fold_valid[rest[:int(round(fold_valid_fraction * len(rest)))]] |= np.uint8(1 << k)
            np.save(tmp / "folds.npy", fold)
            np.save(tmp / "fold_valid.npy", fold_valid)
            result["counts"] = {f"fold{k}": _class_counts(labels[fold == k], classes) for k in range(folds)}
        else:
            splits = given.copy()
            for c in range(len(classes)):
                idx = order[bounds[c]:bounds[c + 1]]
                idx = idx[given[idx] < 0]
                idx = idx[np.argsort(hashes[idx], kind="stable")]
                start = 0
                for code, n in enumerate(_scaled_sizes(len(idx), split_sizes)):
                    splits[idx[start:start + n]] = code
                    start += n
            if split_sizes[1] and not (splits == SPLIT_CODE["valid"]).any():
                _carve_valid(splits, order, bounds, hashes, split_sizes)
            np.save(tmp / "splits.npy", splits)
            result["counts"] = {name: _class_counts(labels[splits == code], classes) for name, code in SPLIT_CODE.items()}
            result["counts"]["unused"] = _class_counts(labels[splits < 0], classes)
        del hashes
        for f in ("labels.tmp.npy", "hashes.tmp.npy", "given.tmp.npy", "key_ids.tmp.txt"):
            (tmp / f).unlink()
        return result

    def _write_key_ids(self) -> None:
        dtype = np.int64 if self.keys_all_int else np.dtype(f"S{self.key_width}")
        out = np.lib.format.open_memmap(self.tmp / "key_ids.npy", mode="w+", dtype=dtype, shape=(self.n,))
        with open(self.tmp / "key_ids.tmp.txt", encoding="utf-8", errors="surrogatepass") as f:
            start, lines = 0, []
            for line in f:
                lines.append(line[:-1])
                if len(lines) == _KEY_CHUNK:
                    start = _put_keys(out, start, lines, self.keys_all_int)
                    lines = []
            _put_keys(out, start, lines, self.keys_all_int)
        out.flush()
        del out


def _put_keys(out, start: int, lines: list[str], as_int: bool) -> int:
    if as_int:
        vals = np.array([int(s) if s else -1 for s in lines], np.int64)
    else:
        vals = np.array([s.encode("utf-8", "surrogatepass") for s in lines], out.dtype)
    out[start:start + len(lines)] = vals
    return start + len(lines)


def _scaled_sizes(n: int, sizes: Sequence[int]) -> list[int]:
    """Per-class (train, valid, test) sizes: ``sizes`` when the class has enough sketches, else scaled down
    proportionally (valid and test keep at least one sketch each when the class has three or more)."""
    total = sum(sizes)
    if n >= total:
        return list(sizes)
    valid = int(round(n * sizes[1] / total)) if total else 0
    test = int(round(n * sizes[2] / total)) if total else 0
    if n >= 3:
        valid = max(valid, 1) if sizes[1] else 0
        test = max(test, 1) if sizes[2] else 0
    return [n - valid - test, valid, test]


def _carve_valid(splits: np.ndarray, order: np.ndarray, bounds: np.ndarray, hashes: np.ndarray,
                 split_sizes: Sequence[int]) -> None:
    """In place: per class, the train records that the hash split with ``(TRAIN, VALID, 0)`` would make valid become
    valid (module docstring). ``order``/``bounds``: the records sorted by class and each class's range in it."""
    for c in range(len(bounds) - 1):
        idx = order[bounds[c]:bounds[c + 1]]
        idx = idx[splits[idx] == SPLIT_CODE["train"]]
        idx = idx[np.argsort(hashes[idx], kind="stable")]
        n_train, n_valid, _ = _scaled_sizes(len(idx), (split_sizes[0], split_sizes[1], 0))
        splits[idx[n_train:n_train + n_valid]] = SPLIT_CODE["valid"]


def _class_counts(labels: np.ndarray, classes: list[str]) -> dict[str, int]:
    counts = np.bincount(labels.astype(np.int64), minlength=len(classes))
    return {name: int(n) for name, n in zip(classes, counts)}


# ---------------------------------------------------------------------------------------------- prepare
def parse_split_sizes(text: str) -> tuple[int, int, int]:
    try:
        sizes = tuple(int(x) for x in str(text).split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or min(sizes) < 0 or sum(sizes) == 0:
        raise R2CNNError(f"--split-sizes must be three non-negative integers TRAIN,VALID,TEST, not {text!r}")
    return sizes  # type: ignore[return-value]


def prepare(sources: Sequence[str | Path] = (), out: str | Path = "data/store", *, builtin: int | None = None,
            split_sizes: Sequence[int] = DEFAULT_SPLIT_SIZES, folds: int | None = None,
            fold_valid_fraction: float = 0.1, seed: int = 0, label_field: str | None = None,
            split_from_folders: bool = False, policy: ErrorPolicy | None = None, force: bool = False,
            simplify_raw: bool = False, dedupe_key_id: bool = False,
            progress: bool | None = None, log=print) -> "SketchStore":
    """Build (or find up to date) a store at ``out`` from files/folders and/or the built-in generator.

    Args:
        sources: files or folders (recursive; :func:`r2cnn.data.formats.find_sketch_files`) of ndjson, npz, bin,
            svg; ``train=PATH`` (or valid=/test=) puts every record of PATH in that split.
        builtin: sketches per class from :func:`r2cnn.data.builtin.generate` (seeded by ``seed``).
        split_sizes: per-class (train, valid, test) for records without their own split (module docstring).
        folds: k-fold cross-validation instead of train/valid/test (default 3 when any source is SVG).
        label_field: take the class from this metadata field (e.g. ``"word"``) instead of the file stem
            (ndjson, npz, bin) or the folder name (SVG).
        split_from_folders: a ``train``/``valid``/``test`` folder on a file's path gives its split.
        policy: what to do with bad records (default: raise).
        force: rebuild even when the manifest says the store is up to date.
        simplify_raw: run Google's raw -> simplified pipeline
            (:func:`r2cnn.data.transforms.raw_to_simplified`) on raw QuickDraw records (those with timestamps), so
            they are stored as the simplified files' are (integers 0..255, RDP epsilon 2).
        dedupe_key_id: keep only the first record of each key_id, in source order (e.g. simplified files first,
            then the raw files of the same drawings: the raw copies are dropped; records without a key_id are all
            kept); the count is in the manifest.
        progress: tqdm bar (default: only on a terminal); log: where the "up to date" and skip summaries go.
    Returns: the opened :class:`SketchStore`.
    """
    out = Path(out)
    split_sizes = tuple(int(s) for s in split_sizes)
    policy = policy or ErrorPolicy()
    files: list[tuple[Path, str, str | None]] = []
    for spec in sources:
        path, split = _parse_source(spec)
        files.extend(_expand(path, split, split_from_folders))
    if not files and not builtin:
        raise R2CNNError("nothing to prepare: give source files or folders, or --builtin N")
    if folds is None and any(fmt == "svg" for _, fmt, _ in files):
        folds = DEFAULT_SVG_FOLDS
    if folds is not None and not 2 <= folds <= 8:
        raise R2CNNError(f"--folds must be between 2 and 8, not {folds}")
    if not 0.0 <= fold_valid_fraction < 1.0:
        raise R2CNNError(f"--fold-valid-fraction must be in [0, 1), not {fold_valid_fraction}")
    options = {"builtin": builtin, "split_sizes": list(split_sizes), "folds": folds,
               "fold_valid_fraction": fold_valid_fraction if folds else None, "seed": seed,
               "label_field": label_field, "split_from_folders": split_from_folders, "on_error": policy.mode}
    # recorded only when set, so stores built before these options existed stay up to date
    options.update({k: True for k, on in (("simplify_raw", simplify_raw), ("dedupe_key_id", dedupe_key_id)) if on})
    inputs = _describe(files)
    with one_writer_at_a_time(out, log):
        if not force and _up_to_date(out, options, inputs):
            try:
                store = SketchStore(out)
            except R2CNNError as e:
                log(f"rebuilding a damaged store: {e}")
            else:
                log(f"{out}: up to date ({len(store)} sketches, {len(store.classes)} classes)")
                return store
        _write_store(out, _manifest_fields(files, inputs, options, builtin, seed, label_field, policy, progress,
                                           simplify_raw, dedupe_key_id),
                     seed=seed, split_sizes=split_sizes, folds=folds, fold_valid_fraction=fold_valid_fraction)
    if policy.skipped:
        log(policy.summary())
    return SketchStore(out)


def _up_to_date(out: Path, options: dict, inputs: list[dict]) -> bool:
    """Whether ``out`` has a complete manifest of this store version, these options and these sources."""
    try:
        old = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(old, dict) or not isinstance(old.get("inputs"), list):
        return False
    old_inputs = [{k: v for k, v in d.items() if k != "sketches"} for d in old["inputs"] if isinstance(d, dict)]
    return bool(old.get("complete")) and old.get("options") == options and old_inputs == inputs \
        and old.get("store_version") == STORE_VERSION and not _valid_to_carve(old, options)


def _valid_to_carve(manifest: dict, options: dict) -> bool:
    """Whether a store built before train records gave up a validation part (module docstring) lacks one that a
    build now would carve."""
    counts = manifest.get("counts")
    if manifest.get("train_gives_up_valid"):  # built under that rule: its empty validation split is all there is
        return False
    if options["folds"] or not options["split_sizes"][1] or not isinstance(counts, dict):
        return False
    total = {k: sum(v.values()) if isinstance(v, dict) else 0 for k, v in counts.items()}
    return total.get("valid") == 0 and bool(total.get("train"))


def _manifest_fields(files, inputs, options, builtin, seed, label_field, policy, progress, simplify_raw=False,
                     dedupe_key_id=False):
    """``feed(builder)`` for :func:`_write_store`: streams the sources and returns prepare's manifest fields."""
    from r2cnn import __version__

    def feed(builder: _Builder) -> dict:
        changes = {"raw_simplified": 0, "duplicate_key_ids_dropped": 0} if simplify_raw or dedupe_key_id else None
        per_source = _stream(builder, files, builtin, seed, label_field, policy, progress, simplify_raw,
                             dedupe_key_id, changes)
        return {**(changes or {}), "r2cnn_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "options": options, "inputs": [dict(d, sketches=n) for d, n in zip(inputs, per_source)],
                "builtin_sketches": per_source[-1] if builtin else 0, "skipped": dict(policy.counts),
                "fingerprint": "sha1(size, first MiB, last MiB)", "train_gives_up_valid": True}

    return feed


@contextlib.contextmanager
def one_writer_at_a_time(out: Path, log, *, command: str = "r2cnn prepare", wait: bool = True):
    """Hold an exclusive ``flock`` on ``.OUT.lock`` beside ``out`` while one ``command`` writes ``out``: with
    ``wait``, waiting (and saying so) while another process holds it, else refusing with a one-line
    :class:`R2CNNError`. The kernel releases a lock when its process dies, so a killed writer never leaves a stale
    one. The holder removes the file before releasing it; a waiter that then gets the lock of a removed file opens
    the file again, so two writers never hold locks on two different files. (``prepare`` waits; ``experiment``
    refuses, since the second run would only find the first one's work.)"""
    if fcntl is None:
        yield
        return
    make_folder(out.parent)
    lock_path = out.parent / f".{out.resolve().name}.lock"
    said = False
    while True:
        try:
            f = open(lock_path, "a")
        except OSError as e:
            raise R2CNNError(f"{lock_path}: cannot create the lock file ({e.strerror})") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                f.close()
                raise R2CNNError(f"{out}: another `{command}` is writing this folder (lock: {lock_path}); wait for "
                                 f"it to end, or use another folder") from None
            if not said:
                log(f"{out}: waiting for another `{command}` that is writing this folder (lock: {lock_path})")
                said = True
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            if os.stat(lock_path).st_ino == os.fstat(f.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        f.close()
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        f.close()


def _write_store(out: Path, feed, *, seed: int, split_sizes, folds, fold_valid_fraction) -> None:
    """Build in ``out.tmp-*`` (``feed(builder)`` adds the sketches and returns manifest fields), write the manifest
    last, then move the directory into place; on any failure or interrupt the temporary directory is removed.
    An operating-system error (no space, no permission) is a one-line :class:`R2CNNError`."""
    make_folder(out.parent)
    tmp = out.with_name(f"{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    t0 = time.perf_counter()
    try:
        tmp.mkdir()
        builder = _Builder(tmp, seed)
        extra = feed(builder)
        if builder.n == 0:
            raise R2CNNError(f"{out}: no sketches to store (every source was empty or every record was skipped)")
        parts = builder.finish(split_sizes=split_sizes, folds=folds, fold_valid_fraction=fold_valid_fraction)
        manifest = {"store_version": STORE_VERSION, "complete": True, "num_sketches": builder.n,
                    "num_points": builder.n_points, "kind": "kfold" if folds else "splits",
                    "build_seconds": round(time.perf_counter() - t0, 3), **parts, **extra}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _swap_into_place(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        where = f": {e.filename}" if e.filename else ""
        raise R2CNNError(f"{out}: cannot write the store ({e.strerror or e}{where})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _stream(builder: _Builder, files, builtin, seed, label_field, policy, progress, simplify_raw=False,
            dedupe_key_id=False, changes: dict | None = None) -> list[int]:
    """Feed every source's sketches to the builder; returns sketches per file (plus one entry for builtin).
    ``simplify_raw`` / ``dedupe_key_id``: see :func:`prepare`; ``changes`` counts what they did."""
    from tqdm.auto import tqdm
    if files:
        from r2cnn.data.formats import read_sketches
        from r2cnn.data.formats.common import file_label
    if simplify_raw:
        from r2cnn.data.transforms import raw_to_simplified
    seen: set[str] = set()
    counts = []
    bar = tqdm(unit=" sketches", disable=None if progress is None else not progress, smoothing=0.1)
    try:
        for i, (path, fmt, split) in enumerate(files):
            bar.set_description(f"[{i + 1}/{len(files)}] {path.name}")
            n0 = builder.n
            label = None if (label_field or fmt == "svg") else file_label(path)
            for sk in read_sketches(path, fmt=fmt, policy=policy, label=label):
                name = _label_of(sk, path, label_field, policy)
                if name is None:
                    continue
                key = sk.meta.get("key_id")
                if dedupe_key_id and key not in (None, ""):
                    if str(key) in seen:
                        changes["duplicate_key_ids_dropped"] += 1
                        continue
                    seen.add(str(key))
                if simplify_raw and "t" in sk.meta:
                    try:
                        sk = raw_to_simplified(sk)
                    except R2CNNError as e:  # an empty drawing
                        policy.handle(SketchFormatError(str(path), "cannot simplify", line=sk.meta.get("line"),
                                                        field="drawing", detail=str(e)))
                        continue
                    changes["raw_simplified"] += 1
                split_key = str(key) if key not in (None, "") else f"{path.parent.name}/{path.name}:{_where(sk)}"
                builder.add(sk, name, key, split_key, split or sk.meta.get("split"))
                bar.update(1)
            counts.append(builder.n - n0)
        if builtin:
            from r2cnn.data.builtin import generate
            bar.set_description(f"built-in x {builtin}")
            n0 = builder.n
            for j, sk in enumerate(generate(builtin, seed=seed)):
                key = sk.meta.get("key_id")
                builder.add(sk, str(sk.label), key, str(key) if key is not None else f"builtin:{j}", None)
                bar.update(1)
            counts.append(builder.n - n0)
    finally:
        bar.close()
    return counts


def _where(sk: Sketch) -> Any:
    return sk.meta.get("line", sk.meta.get("record", ""))


def _label_of(sk: Sketch, path: Path, label_field: str | None, policy: ErrorPolicy) -> str | None:
    value = sk.meta.get(label_field) if label_field else sk.label
    if value is None or value == "":
        policy.handle(SketchFormatError(str(path), "missing label", line=sk.meta.get("line"),
                                        record=sk.meta.get("record"), field=label_field or "label"))
        return None
    return str(value)


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``tmp``; the old store is moved aside first and removed after."""
    old = None
    if out.exists():
        if not out.is_dir() or (not (out / MANIFEST).exists() and any(out.iterdir())):
            raise R2CNNError(f"{out}: exists and is not a sketch store; refusing to replace it")
        old = out.with_name(f"{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
    replace_durably(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- reading
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


def build_store(sketches: Iterable[Sketch], out: str | Path, *, split_sizes: Sequence[int] = DEFAULT_SPLIT_SIZES,
                folds: int | None = None, fold_valid_fraction: float = 0.1, seed: int = 0) -> SketchStore:
    """Write a store from in-memory sketches (labels = class names; ``meta["split"]`` / ``meta["key_id"]`` used
    when present). For tests and programmatic use; always rebuilds."""
    def feed(builder: _Builder) -> dict:
        for j, sk in enumerate(sketches):
            key = sk.meta.get("key_id")
            builder.add(sk, str(sk.label), key, str(key) if key not in (None, "") else f"memory:{j}",
                        sk.meta.get("split"))
        return {"options": {"builtin": None, "split_sizes": list(split_sizes), "folds": folds,
                            "fold_valid_fraction": fold_valid_fraction if folds else None, "seed": seed},
                "inputs": [], "skipped": {}}

    with one_writer_at_a_time(Path(out), print):
        _write_store(Path(out), feed, seed=seed, split_sizes=split_sizes, folds=folds,
                     fold_valid_fraction=fold_valid_fraction)
    return SketchStore(out)
