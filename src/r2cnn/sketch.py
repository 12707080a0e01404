"""Core types: :class:`Sketch` (one drawing) and :class:`SketchBatch` (packed sketches for a model).

Point layout everywhere: float32 ``(N, 3)`` with columns ``x, y, pen_end``; ``pen_end`` is 1 on the last point
of each stroke and 0 elsewhere (the paper's s_i, Sec. 3.1). Coordinates are whatever the source used
(QuickDraw: 0..255 or screen pixels, y down) until :func:`r2cnn.data.transforms.normalize` maps the sketch
into [-1, 1]^2 (y still down), which is what :mod:`r2cnn.raster` draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from r2cnn.errors import R2CNNError
from r2cnn.strokes import drawing_points, sketch_points

if TYPE_CHECKING:
    import torch


@dataclass
class Sketch:
    """A vector sketch: ``points`` float32 ``(N, 3)`` = x, y, pen_end; ``label`` a class name or index; ``meta``
    free-form (key_id, countrycode, timestamp, recognized, source file and line, raw timestamps ...)."""

    points: np.ndarray
    label: Any = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 3)

    @classmethod
    def from_strokes(cls, strokes: Sequence[np.ndarray], label: Any = None, meta: dict | None = None) -> "Sketch":
        """Build from a list of ``(n_i, 2)`` (or ``(n_i, >=2)``, extra columns ignored) stroke arrays: one row per
        point. A ``(2, n)`` stroke with n != 2 is refused: it is almost surely Quick, Draw!'s ``[xs, ys]``, which
        read as rows would be two points (:meth:`from_quickdraw` reads that layout)."""
        parts = []
        for i, s in enumerate(strokes):
            s = np.asarray(s, dtype=np.float32)
            if len(s) == 0:
                continue
            if s.ndim != 2 or s.shape[1] < 2:
                raise R2CNNError(f"stroke {i}: shape {s.shape}, expected (points, 2): one [x, y] row per point")
            if s.shape[0] == 2 and s.shape[1] != 2:
                raise R2CNNError(f"stroke {i}: shape {s.shape} looks like Quick, Draw!'s [xs, ys]; use "
                                 f"Sketch.from_quickdraw(drawing) for [[xs, ys], ...], or pass (points, 2) rows")
            p = np.zeros((len(s), 3), np.float32)
            p[:, :2] = s[:, :2]
            p[-1, 2] = 1.0
            parts.append(p)
        pts = np.concatenate(parts) if parts else np.zeros((0, 3), np.float32)
        return cls(pts, label, dict(meta or {}))

    @classmethod
    def from_quickdraw(cls, drawing: Sequence, label: Any = None, meta: dict | None = None,
                       source: str = "drawing") -> "Sketch":
        """Build from a Quick, Draw! drawing as in its ndjson files and ``r2cnn serve``'s API: strokes ``[xs, ys]``
        (simplified) or ``[xs, ys, ts]`` (raw; the times go to ``meta["t"]``), lists or arrays. A malformed
        drawing raises :class:`r2cnn.errors.SketchFormatError` naming ``source`` and the field (the checks of
        :mod:`r2cnn.strokes`, the input contract every entry point shares)."""
        points, t = drawing_points(drawing, source)
        meta = dict(meta or {})
        if t is not None:
            meta["t"] = t
        return cls(points, label, meta)

    @classmethod
    def checked(cls, value) -> "Sketch":
        """A sketch from any form of the input contract (:func:`r2cnn.strokes.sketch_points`: strokes ``[[xs, ys],
        ...]`` or ``[[xs, ys, ts], ...]``, an ``(N, 3)`` array, or a Sketch, whose label and meta are kept), checked
        as every predict entry point checks it; malformed input is a one-line
        :class:`~r2cnn.errors.SketchFormatError`."""
        points = sketch_points(value)
        if isinstance(value, Sketch):
            return cls(points, value.label, value.meta)
        return cls(points)

    @property
    def num_points(self) -> int:
        return len(self.points)

    @property
    def stroke_bounds(self) -> np.ndarray:
        """int64 ``(S+1,)`` start indices of the strokes plus the end; stroke s is ``points[b[s]:b[s+1]]``."""
        ends = np.flatnonzero(self.points[:, 2] > 0.5) + 1
        if len(self.points) and (len(ends) == 0 or ends[-1] != len(self.points)):
            ends = np.append(ends, len(self.points))  # an unterminated last stroke still counts
        return np.concatenate([[0], ends]).astype(np.int64)

    @property
    def num_strokes(self) -> int:
        return len(self.stroke_bounds) - 1

    def strokes(self) -> list[np.ndarray]:
        """Views ``(n_i, 2)`` of x, y for each stroke, in drawing order."""
        b = self.stroke_bounds
        return [self.points[b[i]:b[i + 1], :2] for i in range(len(b) - 1)]

    def copy(self) -> "Sketch":
        return Sketch(self.points.copy(), self.label, dict(self.meta))


@dataclass
class SketchBatch:
    """Sketches packed for a model (docs/architecture.md "Core types").

    - ``points``: float32 ``(P, 3)``, all sketches' points concatenated (normalised to [-1, 1]^2).
    - ``offsets``: int64 ``(B+1,)``; sketch b is ``points[offsets[b]:offsets[b+1]]``.
    - ``labels``: int64 ``(B,)`` class indices (-1 where unknown).
    - ``geometry``: optional precomputed :class:`r2cnn.raster.Geometry` for these points (computed in
      data-loader workers so the training step only renders).
    """

    points: torch.Tensor
    offsets: torch.Tensor
    labels: torch.Tensor
    geometry: Any = None

    @property
    def batch_size(self) -> int:
        return int(self.offsets.numel()) - 1

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def to(self, device, non_blocking: bool = False) -> "SketchBatch":
        geo = self.geometry.to(device) if self.geometry is not None else None
        return SketchBatch(self.points.to(device, non_blocking=non_blocking),
                           self.offsets.to(device, non_blocking=non_blocking),
                           self.labels.to(device, non_blocking=non_blocking), geo)

    def pin_memory(self) -> "SketchBatch":
        geo = self.geometry.pin_memory() if self.geometry is not None else None
        return SketchBatch(self.points.pin_memory(), self.offsets.pin_memory(), self.labels.pin_memory(), geo)

    @classmethod
    def from_sketches(cls, sketches: Sequence[Sketch], labels: Sequence[int] | None = None,
                      classes: Sequence[str] | None = None) -> "SketchBatch":
        """Pack already-normalised sketches.

        ``labels`` (B,) default to each sketch's label: an integer is the class index, ``None`` is unknown (-1),
        and a class name is looked up in ``classes``. A name without ``classes``, or not among them, is an
        :class:`~r2cnn.errors.R2CNNError`: a batch never turns a known class into "unknown" silently.
        """
        import torch  # imported here so that reading and converting files does not load torch

        pts = [s.points for s in sketches]
        lengths = np.array([len(p) for p in pts], np.int64)
        offsets = np.zeros(len(pts) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        packed = np.concatenate(pts) if pts else np.zeros((0, 3), np.float32)
        if labels is None:
            index = None if classes is None else {name: i for i, name in enumerate(classes)}
            labels = [_label_index(s.label, index) for s in sketches]
        return cls(torch.from_numpy(np.ascontiguousarray(packed, dtype=np.float32)), torch.from_numpy(offsets),
                   torch.as_tensor(np.asarray(labels, np.int64)))

    def sketch_points(self, b: int) -> torch.Tensor:
        return self.points[int(self.offsets[b]):int(self.offsets[b + 1])]


def _label_index(label: Any, index: dict[str, int] | None) -> int:
    if label is None:
        return -1
    if isinstance(label, (int, np.integer)):
        return int(label)
    if index is None:
        raise R2CNNError(f"sketch label {label!r} is a class name: pass classes=[...] to map names to indices")
    if label not in index:
        raise R2CNNError(f"sketch label {label!r} is not one of the {len(index)} classes")
    return index[label]
