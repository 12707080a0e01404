"""``prepare``: a store built (or found up to date) from sketch files and folders and the built-in generator.

A rerun whose sources (size, mtime, fingerprint) and options match the manifest does nothing.

Source fingerprint: sha1 of the file size and its first and last MiB. It is fast on 22 GB of ndjson and, together
with size and mtime, catches any ordinary change; an edit that keeps the size, the mtime and both ends is missed
(use ``force=True`` / ``--force`` then).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from r2cnn.data.store.lock import one_writer_at_a_time
from r2cnn.data.store.reader import MANIFEST, STORE_VERSION, SketchStore
from r2cnn.data.store.splits import DEFAULT_SPLIT_SIZES, DEFAULT_SVG_FOLDS, SPLIT_CODE
from r2cnn.data.store.writer import Builder, write_store
from r2cnn.errors import ErrorPolicy, R2CNNError, SketchFormatError
from r2cnn.sketch import Sketch


_FINGERPRINT_BYTES = 1 << 20


def fingerprint(path: Path) -> str:
    """sha1 of the size and the first and last MiB of a file (module docstring: why)."""
    size = path.stat().st_size
    h = hashlib.sha1(size.to_bytes(8, "little"))
    with open(path, "rb") as f:
        h.update(f.read(_FINGERPRINT_BYTES))
        if size > _FINGERPRINT_BYTES:
            f.seek(max(_FINGERPRINT_BYTES, size - _FINGERPRINT_BYTES))
            h.update(f.read(_FINGERPRINT_BYTES))
    return h.hexdigest()



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



def prepare(sources: Sequence[str | Path] = (), out: str | Path = "data/store", *, builtin: int | None = None,
            split_sizes: Sequence[int] | None = None, folds: int | None = None,
            fold_valid_fraction: float = 0.1, seed: int = 0, label_field: str | None = None,
            split_from_folders: bool = False, policy: ErrorPolicy | None = None, force: bool = False,
            simplify_raw: bool = False, dedupe_key_id: bool = False, workers: int = 1,
            progress: bool | None = None, log=print) -> "SketchStore":
    """Build (or find up to date) a store at ``out`` from files/folders and/or the built-in generator.

    Args:
        sources: files or folders (recursive; :func:`r2cnn.data.formats.find_sketch_files`) of ndjson, npz, bin,
            svg; ``train=PATH`` (or valid=/test=) puts every record of PATH in that split.
        builtin: sketches per class from :func:`r2cnn.data.builtin.generate` (seeded by ``seed``).
        split_sizes: per-class (train, valid, test) for records without their own split
            (:mod:`r2cnn.data.store.splits`); default: the paper's, or, for built-in sketches alone,
            :func:`r2cnn.data.builtin.split_sizes` of ``builtin``.
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
        workers: processes that read (and simplify, and hash) source files in parallel, one file each at a time;
            the store is the same for any count (files are added in order). 1: read in this process. Not with
            ``dedupe_key_id`` (which needs one reader that sees every key_id in order).
        progress: tqdm bar (default: only on a terminal); log: where the "up to date" and skip summaries go.
    Returns: the opened :class:`SketchStore`.
    """
    out = Path(out)
    if split_sizes is None:
        from r2cnn.data.builtin import split_sizes as builtin_split_sizes

        split_sizes = builtin_split_sizes(builtin) if builtin and not sources else DEFAULT_SPLIT_SIZES
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
        # resumable after a kill, per source file, unless dedupe_key_id (its set of seen key_ids is not saved)
        resume_key = None if dedupe_key_id else hashlib.sha1(json.dumps(
            {"store_version": STORE_VERSION, "options": options, "inputs": inputs}, sort_keys=True).encode()).hexdigest()
        if workers < 1:
            raise R2CNNError(f"--workers must be at least 1, not {workers}")
        workers = 1 if dedupe_key_id else min(int(workers), max(len(files), 1))
        write_store(out, _manifest_fields(files, inputs, options, builtin, seed, label_field, policy, progress,
                                           simplify_raw, dedupe_key_id, workers),
                     seed=seed, split_sizes=split_sizes, folds=folds, fold_valid_fraction=fold_valid_fraction,
                     resume_key=resume_key, log=log)
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
    """Whether a store built before train records gave up a validation part (:mod:`~r2cnn.data.store.splits`) lacks one that a
    build now would carve."""
    counts = manifest.get("counts")
    if manifest.get("train_gives_up_valid"):  # built under that rule: its empty validation split is all there is
        return False
    if options["folds"] or not options["split_sizes"][1] or not isinstance(counts, dict):
        return False
    total = {k: sum(v.values()) if isinstance(v, dict) else 0 for k, v in counts.items()}
    return total.get("valid") == 0 and bool(total.get("train"))


def _manifest_fields(files, inputs, options, builtin, seed, label_field, policy, progress, simplify_raw=False,
                     dedupe_key_id=False, workers=1):
    """``feed(builder)`` for :func:`write_store`: streams the sources and returns prepare's manifest fields."""
    from r2cnn.version import __version__

    def feed(builder: Builder) -> dict:
        changes = {"raw_simplified": 0, "duplicate_key_ids_dropped": 0} if simplify_raw or dedupe_key_id else None
        per_source = _stream(builder, files, builtin, seed, label_field, policy, progress, simplify_raw,
                             dedupe_key_id, changes, workers)
        return {**(changes or {}), "r2cnn_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "options": options, "inputs": [dict(d, sketches=n) for d, n in zip(inputs, per_source)],
                "builtin_sketches": per_source[-1] if builtin else 0, "skipped": dict(policy.counts),
                "fingerprint": "sha1(size, first MiB, last MiB)", "train_gives_up_valid": True}

    return feed



def _read_file(task: tuple) -> dict:
    """A worker's whole source file as arrays for :meth:`Builder.add_many` (``prepare(workers=N)``); an error
    (with ``on_error=raise``) comes back as its one-line message."""
    path, fmt, split, label_field, mode, simplify_raw, seed = task
    from r2cnn.data.formats import read_sketches
    from r2cnn.data.formats.common import file_label
    from r2cnn.data.store.npy import points_dtype
    from r2cnn.data.store.splits import split_hash
    if simplify_raw:
        from r2cnn.data.transforms import raw_to_simplified
    policy = ErrorPolicy(mode)
    pts, lengths, labels, hashes, given, keys = [], [], [], [], [], []
    simplified = 0
    try:
        label = None if (label_field or fmt == "svg") else file_label(path)
        for sk in read_sketches(path, fmt=fmt, policy=policy, label=label):
            name = _label_of(sk, path, label_field, policy)
            if name is None:
                continue
            if simplify_raw and "t" in sk.meta:
                try:
                    sk = raw_to_simplified(sk)
                except R2CNNError as e:
                    policy.handle(SketchFormatError(str(path), "cannot simplify", line=sk.meta.get("line"),
                                                    field="drawing", detail=str(e)))
                    continue
                simplified += 1
            key = sk.meta.get("key_id")
            k = "" if key is None else str(key)
            split_key = k if k else f"{path.parent.name}/{path.name}:{_where(sk)}"
            pts.append(sk.points)
            lengths.append(len(sk.points))
            labels.append(name)
            hashes.append(split_hash(split_key, seed))
            s = split or sk.meta.get("split")
            given.append(SPLIT_CODE[s] if s else -1)
            keys.append(k)
    except R2CNNError as e:
        return {"error": str(e)}
    points = np.concatenate(pts) if pts else np.zeros((0, 3), np.float32)
    return {"points": points.astype(points_dtype(points)), "lengths": np.asarray(lengths, np.int64),
            "labels": labels, "hashes": np.asarray(hashes, np.uint64), "given": np.asarray(given, np.int8),
            "keys": keys, "policy_counts": dict(policy.counts), "policy_examples": dict(policy.examples),
            "raw_simplified": simplified}


def _exit_with_parent(pid: int) -> None:
    """A reader process exits when ``prepare`` is gone (``kill -9``): it would otherwise wait on its task pipe
    forever, since it holds that pipe's other end itself."""
    def watch():
        while os.getppid() == pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _parallel_files(files, start: int, workers: int, task):
    """``(index, result of _read_file)`` for ``files[start:]`` in order, read by ``workers`` processes with at most
    ``workers + 1`` files read ahead (memory: a few files' arrays)."""
    import multiprocessing as mp
    from collections import deque

    with mp.get_context("spawn").Pool(workers, initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
        pending: deque = deque()
        todo = iter(range(start, len(files)))
        for i in todo:
            pending.append((i, pool.apply_async(_read_file, (task(files[i]),))))
            if len(pending) > workers:
                break
        while pending:
            i, res = pending.popleft()
            for j in todo:
                pending.append((j, pool.apply_async(_read_file, (task(files[j]),))))
                break
            yield i, res.get()


def _stream(builder: Builder, files, builtin, seed, label_field, policy, progress, simplify_raw=False,
            dedupe_key_id=False, changes: dict | None = None, workers: int = 1) -> list[int]:
    """Feed every source's sketches to the builder; returns sketches per file (plus one entry for builtin).
    ``simplify_raw`` / ``dedupe_key_id``: see :func:`prepare`; ``changes`` counts what they did."""
    from tqdm.auto import tqdm
    if files:
        from r2cnn.data.formats import read_sketches
        from r2cnn.data.formats.common import file_label
    if simplify_raw:
        from r2cnn.data.transforms import raw_to_simplified
    seen: set[str] = set()
    counts: list[int] = []
    done = 0
    if builder.resumed is not None:  # an interrupted build: its first `done` files are in the store already
        state = builder.resumed["feed"]
        done, counts = int(state["files_done"]), list(state["counts"])
        policy.counts.update(state.get("policy_counts", {}))
        policy.examples.update(state.get("policy_examples", {}))
        if changes is not None:
            changes.update(state.get("changes") or {})
    bar = tqdm(unit=" sketches", disable=None if progress is None else not progress, smoothing=0.1,
               initial=builder.n)

    def checkpoint(i):
        if builder.key is not None:
            builder.checkpoint({"files_done": i + 1, "counts": counts, "policy_counts": dict(policy.counts),
                                "policy_examples": dict(policy.examples), "changes": changes})

    try:
        if workers > 1 and not dedupe_key_id and done < len(files):
            def task(f):
                return (f[0], f[1], f[2], label_field, policy.mode, simplify_raw, seed)
            for i, r in _parallel_files(files, done, workers, task):
                if "error" in r:
                    raise R2CNNError(r["error"])
                bar.set_description(f"[{i + 1}/{len(files)}] {files[i][0].name}")
                builder.add_many(r["points"], r["lengths"], r["labels"], r["hashes"], r["given"], r["keys"])
                policy.counts.update(r["policy_counts"])
                for reason, example in r["policy_examples"].items():
                    policy.examples.setdefault(reason, example)
                if changes is not None:
                    changes["raw_simplified"] += r["raw_simplified"]
                counts.append(len(r["lengths"]))
                bar.update(len(r["lengths"]))
                checkpoint(i)
            done = len(files)
        for i, (path, fmt, split) in enumerate(files):
            if i < done:
                continue
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
            checkpoint(i)
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

