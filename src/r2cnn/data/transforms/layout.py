"""Small helpers on the packed ``(N, 3)`` layout (x, y, pen_end) that the transforms share."""

from __future__ import annotations

import numpy as np

from r2cnn.sketch import Sketch


def with_points(sketch: Sketch, points: np.ndarray) -> Sketch:
    return Sketch(points, sketch.label, dict(sketch.meta))


def stroke_ids(points: np.ndarray) -> np.ndarray:
    """int64 ``(N,)``: index of the stroke each point belongs to (pen_end closes a stroke)."""
    pen = (points[:, 2] > 0.5).astype(np.int64)
    return np.cumsum(pen) - pen


def pen_end_from_ids(stroke_ids: np.ndarray) -> np.ndarray:
    """float32 ``(N,)`` pen_end column for points grouped by consecutive ``stroke_ids``."""
    pen = np.ones(len(stroke_ids), np.float32)
    if len(stroke_ids) > 1:
        pen[:-1] = stroke_ids[1:] != stroke_ids[:-1]
    return pen


def stroke_lengths(points: np.ndarray, stroke_ids: np.ndarray, num_strokes: int) -> np.ndarray:
    """float64 ``(S,)`` polyline length of every stroke."""
    if len(points) < 2:
        return np.zeros(num_strokes)
    seg = np.hypot(np.diff(points[:, 0]), np.diff(points[:, 1])).astype(np.float64)
    seg *= points[:-1, 2] < 0.5  # no segment joins the end of one stroke to the start of the next
    return np.bincount(stroke_ids[:-1], weights=seg, minlength=num_strokes)


def bbox(points: np.ndarray) -> tuple[float, float, float, float]:
    """``(min x, min y, max x, max y)``; per column, which is several times faster than ``min(axis=0)`` on the
    strided ``(N, 2)`` view."""
    x, y = points[:, 0], points[:, 1]
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())
