"""Writing a store: records streamed into a temporary directory, the manifest last, then the directory swapped in.

Building streams records into append-only files in ``DIR.tmp-*`` and renames the directory when done, so memory
stays bounded (the compact per-sketch arrays for the split, about 20 bytes a sketch, are the only O(N) state) and
a half-built store never looks complete. ``prepare`` builds in ``DIR.partial`` instead and checkpoints it after
each source file (``progress.json``: the rows of every file and the builder's state, made durable first), so a
build killed hours into 22 GB of QuickDraw resumes at the first unfinished file (:func:`write_store`). :func:`build_store` writes one from in-memory sketches;
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
PROGRESS = "progress.json"  # a resumable build's last checkpoint, in its DIR.partial directory


def _is_plain_int(s: str) -> bool:
    return s.isascii() and s.isdigit() and (s == "0" or s[0] != "0") and int(s) < 2 ** 63



class Builder:
    """Streams sketches into append-only files in ``tmp``; ``finish`` computes labels, splits and the manifest."""

    def __init__(self, tmp: Path, seed: int, resume: dict | None = None):
        """``resume``: the state of :meth:`checkpoint` (``progress.json``) to continue from, the files in ``tmp``
        cut back to it; ``self.resumed`` is then that state (the caller's own fields under ``"feed"``)."""
        self.tmp, self.seed, self.resumed = tmp, seed, resume
        r = resume or {}
        rows = r.get("rows", {})
        self.class_ids: dict[str, int] = dict(r.get("class_ids", {}))
        self.points = NpyAppender(tmp / "points.npy", r.get("points_dtype", np.uint8), (3,), rows=rows.get("points"))
        self.offsets = NpyAppender(tmp / "offsets.npy", np.int64, rows=rows.get("offsets"))
        if resume is None:
            self.offsets.append(np.zeros(1, np.int64))
        self.labels = NpyAppender(tmp / "labels.tmp.npy", np.int32, rows=rows.get("labels"))
        self.hashes = NpyAppender(tmp / "hashes.tmp.npy", np.uint64, rows=rows.get("hashes"))
        self.given = NpyAppender(tmp / "given.tmp.npy", np.int8, rows=rows.get("given"))
        keys = tmp / "key_ids.tmp.txt"
        if resume is not None:
            os.truncate(keys, int(r["keys_bytes"]))
        self._keys = open(keys, "a" if resume is not None else "w", encoding="utf-8", errors="surrogatepass")
        self.keys_all_int, self.key_width = bool(r.get("keys_all_int", True)), int(r.get("key_width", 1))
        self.n, self.n_points = int(r.get("n", 0)), int(r.get("n_points", 0))
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

    def add_many(self, points: np.ndarray, lengths: np.ndarray, labels: Sequence[str], hashes: np.ndarray,
                 given: np.ndarray, keys: Sequence[str]) -> None:
        """Append many sketches at once (one source file read by a worker process): ``points`` ``(P, 3)`` of all of
        them, ``lengths`` points per sketch, per sketch its label, split hash, given split code (-1: none) and
        key_id ("": none). Same result as :meth:`add` for each in turn."""
        self.flush()
        if not len(lengths):
            return
        names, inverse = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
        cids = np.array([self.class_ids.setdefault(str(name), len(self.class_ids)) for name in names], np.int32)
        need = wider(self.points.dtype, points_dtype(points))
        if need != self.points.dtype:
            self.points.widen(need)
        self.points.append(points)
        ends = self.n_points + np.cumsum(np.asarray(lengths, np.int64))
        self.n_points = int(ends[-1])
        self.offsets.append(ends)
        self.labels.append(cids[inverse.reshape(-1)])
        self.hashes.append(np.asarray(hashes, np.uint64))
        self.given.append(np.asarray(given, np.int8))
        keys = [k.replace("\n", " ") for k in keys]
        self._keys.write("\n".join(keys) + "\n")
        present = [k for k in keys if k]
        if present:
            self.keys_all_int = self.keys_all_int and all(_is_plain_int(k) for k in present)
            self.key_width = max(self.key_width, max(len(k.encode("utf-8", "surrogatepass")) for k in present))
        self.n += len(lengths)

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

    def checkpoint(self, feed_state: dict) -> None:
        """Make everything added so far durable and record it in ``progress.json`` (written atomically, last), with
        the caller's ``feed_state`` (e.g. which sources are done): a build killed after this resumes from here."""
        self.flush()
        for a in (self.points, self.offsets, self.labels, self.hashes, self.given):
            a.sync()
        self._keys.flush()
        os.fsync(self._keys.fileno())
        state = {"key": self.key, "n": self.n, "n_points": self.n_points,
                 "class_ids": self.class_ids, "points_dtype": str(self.points.dtype),
                 "rows": {"points": self.points.rows, "offsets": self.offsets.rows, "labels": self.labels.rows,
                          "hashes": self.hashes.rows, "given": self.given.rows},
                 "keys_bytes": self._keys.tell(), "keys_all_int": self.keys_all_int, "key_width": self.key_width,
                 "feed": feed_state}
        part = self.tmp / (PROGRESS + ".tmp")
        with open(part, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, self.tmp / PROGRESS)

    key: str | None = None  # the build's identity (options and sources) that a resumed build must match

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
        (tmp / PROGRESS).unlink(missing_ok=True)
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



def write_store(out: Path, feed, *, seed: int, split_sizes, folds, fold_valid_fraction, resume_key: str | None = None,
                log=print) -> None:
    """Build in ``out.tmp-*`` (``feed(builder)`` adds the sketches and returns manifest fields), write the manifest
    last, then move the directory into place; on any failure or interrupt the temporary directory is removed.
    An operating-system error (no space, no permission) is a one-line :class:`R2CNNError`.

    With ``resume_key`` (a string that names the build: its options and sources) the build happens in
    ``out.partial`` instead, which ``feed`` checkpoints (:meth:`Builder.checkpoint`, e.g. after each source file).
    A build killed (``kill -9``, power loss) or interrupted (Ctrl-C) leaves it behind, and the next build with the
    same key continues from its last checkpoint; one with another key removes it and starts afresh. A failed build
    (bad data, full disk) removes it too."""
    make_folder(out.parent)
    t0 = time.perf_counter()
    resume = None
    if resume_key is None:
        tmp = out.with_name(f"{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    else:
        tmp = out.with_name(f"{out.name}.partial")
        try:
            resume = json.loads((tmp / PROGRESS).read_text())
        except (OSError, ValueError):
            resume = None
        if not isinstance(resume, dict) or resume.get("key") != resume_key:
            resume = None
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        if resume is None:
            tmp.mkdir()
        builder = None
        if resume is not None:
            try:
                builder = Builder(tmp, seed, resume=resume)
                log(f"{tmp}: resuming an interrupted build at its last checkpoint ({builder.n} sketches)")
            except (OSError, KeyError, TypeError, ValueError) as e:
                log(f"{tmp}: cannot resume ({e}); starting afresh")
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
        if builder is None:
            builder = Builder(tmp, seed)
        builder.key = resume_key
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
        kept = "the store there before is kept" if (out / MANIFEST).is_file() else "no store was written"
        raise R2CNNError(f"{out}: cannot write the store ({e.strerror or e}{where}); {kept}") from None
    except KeyboardInterrupt:
        if resume_key is None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
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
