"""Writing a store: records streamed into a temporary directory, the manifest last, then the directory swapped in.

Building streams records into append-only files in ``DIR.tmp-*`` and renames the directory when done, so memory
stays bounded (the compact per-sketch arrays for the split, about 20 bytes a sketch, are the only O(N) state) and
a half-built store never looks complete. :func:`build_store` writes one from in-memory sketches;
:func:`r2cnn.data.store.sources.prepare` from files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from r2cnn.data.formats.common import make_folder, replace_durably
from r2cnn.data.store.lock import one_writer_at_a_time
from r2cnn.data.store.npy import NpyAppender, convert_npy, points_dtype, wider
from r2cnn.data.store.reader import MANIFEST, STORE_VERSION, SketchStore
from r2cnn.data.store.splits import DEFAULT_SPLIT_SIZES, SPLIT_CODE, class_counts, deal_folds, hash_splits, split_hash
from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch


_FLUSH_POINTS = 1 << 20  # points buffered before they are written (16 MB as float32 triples)


_KEY_CHUNK = 1 << 20  # key_id lines per chunk (Python strings: about 70 MB)


def _is_plain_int(s: str) -> bool:
    return s.isascii() and s.isdigit() and (s == "0" or s[0] != "0") and int(s) < 2 ** 63



class Builder:
    """Streams sketches into append-only files in ``tmp``; ``finish`` computes labels, splits and the manifest."""

    def __init__(self, tmp: Path, seed: int):
        self.tmp, self.seed = tmp, seed
        self.class_ids: dict[str, int] = {}
        self.points = NpyAppender(tmp / "points.npy", np.uint8, (3,))
        self.offsets = NpyAppender(tmp / "offsets.npy", np.int64)
        self.offsets.append(np.zeros(1, np.int64))
        self.labels = NpyAppender(tmp / "labels.tmp.npy", np.int32)
        self.hashes = NpyAppender(tmp / "hashes.tmp.npy", np.uint64)
        self.given = NpyAppender(tmp / "given.tmp.npy", np.int8)
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
        self._buf_meta.append((len(pts), cid, split_hash(split_key, self.seed), SPLIT_CODE[split] if split else -1))
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
        need = wider(self.points.dtype, points_dtype(chunk))
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
        convert_npy(tmp / "labels.tmp.npy", tmp / "labels.npy", lambda c: remap[c], label_dtype)
        self._write_key_ids()

        labels = np.load(tmp / "labels.npy")  # compact: 2 bytes a sketch
        hashes = np.load(tmp / "hashes.tmp.npy", mmap_mode="r")
        given = np.load(tmp / "given.tmp.npy")
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(len(classes) + 1))
        result: dict[str, Any] = {"classes": classes, "points_dtype": str(self.points.dtype)}
        if folds:
            fold, fold_valid = deal_folds(order, bounds, hashes, folds, fold_valid_fraction)
            np.save(tmp / "folds.npy", fold)
            np.save(tmp / "fold_valid.npy", fold_valid)
            result["counts"] = {f"fold{k}": class_counts(labels[fold == k], classes) for k in range(folds)}
        else:
            splits = hash_splits(given, order, bounds, hashes, split_sizes)
            np.save(tmp / "splits.npy", splits)
            result["counts"] = {name: class_counts(labels[splits == code], classes) for name, code in SPLIT_CODE.items()}
            result["counts"]["unused"] = class_counts(labels[splits < 0], classes)
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



def write_store(out: Path, feed, *, seed: int, split_sizes, folds, fold_valid_fraction) -> None:
    """Build in ``out.tmp-*`` (``feed(builder)`` adds the sketches and returns manifest fields), write the manifest
    last, then move the directory into place; on any failure or interrupt the temporary directory is removed.
    An operating-system error (no space, no permission) is a one-line :class:`R2CNNError`."""
    make_folder(out.parent)
    tmp = out.with_name(f"{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    t0 = time.perf_counter()
    try:
        tmp.mkdir()
        builder = Builder(tmp, seed)
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



def build_store(sketches: Iterable[Sketch], out: str | Path, *, split_sizes: Sequence[int] = DEFAULT_SPLIT_SIZES,
                folds: int | None = None, fold_valid_fraction: float = 0.1, seed: int = 0) -> SketchStore:
    """Write a store from in-memory sketches (labels = class names; ``meta["split"]`` / ``meta["key_id"]`` used
    when present). For tests and programmatic use; always rebuilds."""
    def feed(builder: Builder) -> dict:
        for j, sk in enumerate(sketches):
            key = sk.meta.get("key_id")
            builder.add(sk, str(sk.label), key, str(key) if key not in (None, "") else f"memory:{j}",
                        sk.meta.get("split"))
        return {"options": {"builtin": None, "split_sizes": list(split_sizes), "folds": folds,
                            "fold_valid_fraction": fold_valid_fraction if folds else None, "seed": seed},
                "inputs": [], "skipped": {}}

    with one_writer_at_a_time(Path(out), print):
        write_store(Path(out), feed, seed=seed, split_sizes=split_sizes, folds=folds,
                     fold_valid_fraction=fold_valid_fraction)
    return SketchStore(out)
