"""sketch-rnn ``.npz``: one file per class holding ``train``/``valid``/``test`` object arrays of stroke-3 sketches.

Stroke-3 (Ha & Eck, sketch-rnn): int16 ``(n, 3)`` rows ``(dx, dy, pen_lift)``; ``(dx, dy)`` is the offset from
the previous point (the first row's from the origin) and ``pen_lift`` is 1 on the last point of each stroke,
which is exactly our ``pen_end``. So absolute points are the cumulative sum of the offsets. The paper's
QuickDraw split (70K/2.5K/2.5K per class, Sec. 4.1) is the split stored in these files; it is kept in
``meta["split"]``. The class is the file stem.

The arrays are pickled object arrays. They are read by :class:`~r2cnn.data.formats.npyfile.NpzArchive`, which
rebuilds plain numpy arrays and refuses any other pickle content (one error naming the file and member), so an
``.npz`` file can never run code here.
"""

from __future__ import annotations

import math
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from r2cnn.data.formats.common import (MAX_POINTS, AtomicWriter, check_one_label, class_name, file_label,
                                       integer_points, origin, points_from_strokes, unreadable)
from r2cnn.data.formats.npyfile import NpzArchive, PieceTooLarge, RefusedPickle
from r2cnn.errors import ErrorPolicy, SketchFormatError
from r2cnn.sketch import Sketch

SPLITS = ("train", "valid", "test")
_INT16 = np.iinfo(np.int16)
# The largest piece a valid sketch pickles to: the data of a float64 stroke-3 array of MAX_POINTS rows.
_MAX_STROKE3_BYTES = 8 * 3 * MAX_POINTS


def stroke3_to_points(stroke3, source: str, record: int) -> np.ndarray:
    """Stroke-3 ``(n, 3)`` -> absolute points ``(n, 3)`` float32 (x, y, pen_end); the last point always ends a
    stroke. Raises :class:`SketchFormatError` for anything but a finite numeric ``(n, 3)`` array with 0/1 pens."""
    def fail(reason, detail=None):
        raise SketchFormatError(source, reason, record=record, field="stroke-3", detail=detail)

    try:
        a = np.asarray(stroke3)
    except (ValueError, TypeError) as e:
        fail("not a numeric (n, 3) array", str(e)[:60])
    if a.dtype.kind not in "iuf" or a.ndim != 2 or a.shape[1] != 3:
        fail("not a numeric (n, 3) array", f"dtype {a.dtype}, shape {a.shape}")
    a = a.astype(np.float64)
    pen = a[:, 2]
    if len(a) and not np.isin(pen, (0.0, 1.0)).all():
        fail("pen_lift not 0 or 1")
    pen_end = pen.astype(bool)
    if len(a):
        pen_end[-1] = True
    lengths = np.diff(np.concatenate([[0], np.flatnonzero(pen_end) + 1]))
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf offsets are reported by points_from_strokes
        xy = np.cumsum(a[:, :2], axis=0)
    return points_from_strokes(xy, lengths, source, record=record)


def read_npz(path: Path, *, policy: ErrorPolicy, label=None) -> Iterator[Sketch]:
    """Stream the sketches of one ``.npz`` file, split by split (``meta``: source, split, record = index in the
    split array)."""
    source = str(path)
    label = file_label(path) if label is None else label
    try:
        data = NpzArchive(path, max_piece=_MAX_STROKE3_BYTES)
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as e:  # not a zip, or a damaged one
        policy.handle(SketchFormatError(source, "unreadable npz", detail=f"not a zip archive ({str(e)[:60]})"))
        return
    except OSError as e:
        policy.handle(unreadable(source, e))
        return
    with data:
        splits = [s for s in SPLITS if s in data.files]
        if not splits:
            policy.handle(SketchFormatError(source, "missing train/valid/test arrays", field="train",
                                            detail=f"has {sorted(data.files)[:5]}"))
            return
        for split in splits:
            split_source = f"{source}[{split}]"
            try:
                shape, dtype = data.header(split)
                # Sketches are a 1-D object array; anything else cannot hold one, and is not decompressed.
                array = data[split] if len(shape) == 1 and (dtype.kind == "O" or math.prod(shape) == 0) else None
            except RefusedPickle as e:
                policy.handle(SketchFormatError(split_source, "refused pickle", field=split,
                                                detail=f"{e}; only numpy arrays are read from .npz files"))
                continue
            except PieceTooLarge as e:
                policy.handle(SketchFormatError(split_source, "too many points", field=split,
                                                detail=f"{e}, the most a sketch of {MAX_POINTS} points takes"))
                continue
            except Exception as e:  # a damaged member can fail in many ways; all mean "not a readable array"
                policy.handle(SketchFormatError(split_source, "unreadable array", field=split,
                                                detail=f"{type(e).__name__}: {str(e)[:60]}"))
                continue
            if array is None:
                policy.handle(SketchFormatError(split_source, "not an array of sketches", field=split,
                                                detail=f"{dtype} array of shape {shape}"[:80]))
                continue
            for i, stroke3 in enumerate(array):
                try:
                    points = stroke3_to_points(stroke3, split_source, i)
                except SketchFormatError as e:
                    policy.handle(e)
                    continue
                yield Sketch(points, label, {"source": source, "split": split, "record": i})


def points_to_stroke3(sketch: Sketch, index: int, fallback: str, *, round_coords: bool) -> np.ndarray:
    """Absolute points -> int16 stroke-3 ``(n, 3)``; raises :class:`SketchFormatError` when a coordinate is not
    an integer (unless ``round_coords``) or an offset does not fit int16."""
    xy = integer_points(sketch, index, fallback, -2**31, 2**31 - 1, round_coords=round_coords, what="npz")
    deltas = np.diff(xy, axis=0, prepend=np.zeros((1, 2), np.int64))
    if len(deltas) and (deltas.min() < _INT16.min or deltas.max() > _INT16.max):
        raise SketchFormatError(**origin(sketch, index, fallback), reason="offset out of int16 range", field="points")
    out = np.empty((len(xy), 3), np.int16)
    out[:, :2] = deltas
    out[:, 2] = sketch.points[:, 2] > 0.5
    if len(out):
        out[-1, 2] = 1
    return out


def _object_array(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)  # np.array(items) would stack equal-shaped sketches into 3-D
    for i, item in enumerate(items):
        out[i] = item
    return out


def write_npz(path: Path, sketches: Iterable[Sketch], *, policy: ErrorPolicy, per_class: bool,
              round_coords: bool = False) -> tuple[int, list[Path]]:
    """Group by label into ``<label>.npz`` files inside folder ``path`` (``per_class``), or write one file (all
    sketches must then share a label). The split is ``meta["split"]`` (``train`` when absent); every file has
    all three arrays, as sketch-rnn's loaders expect. Holds one file's sketches in memory (npz is not streamable).
    """
    groups: dict[Path, dict[str, list]] = defaultdict(lambda: {s: [] for s in SPLITS})
    labels: dict[Path, object] = {}
    written = 0
    for i, sketch in enumerate(sketches):
        target = path / f"{class_name(sketch.label, '.npz')}.npz" if per_class else path
        split = sketch.meta.get("split", "train")
        if split not in SPLITS:
            policy.handle(SketchFormatError(str(path), "unknown split", record=i, field="split", detail=repr(split)[:40]))
            continue
        if not per_class:
            check_one_label(labels, target, sketch, ".npz")
        try:
            groups[target][split].append(points_to_stroke3(sketch, i, str(path), round_coords=round_coords))
        except SketchFormatError as e:
            policy.handle(e)
            continue
        written += 1
    for target, arrays in groups.items():
        with AtomicWriter(target) as f:
            np.savez_compressed(f, **{s: _object_array(arrays[s]) for s in SPLITS})
    return written, list(groups)
