"""Google's Quick, Draw! raw -> simplified pipeline: resampling at a fixed spacing, then RDP, coordinates 0..255 ints."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from r2cnn.data.transforms.layout import bbox, with_points
from r2cnn.data.transforms.simplification import simplify
from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch


@njit(cache=True, nogil=True)
def _resample_kernel(xy, bounds, spacing, out, out_bounds):
    """Resample each stroke at arc-length steps of ``spacing`` from its first point, plus its last point."""
    m = 0
    for s in range(bounds.shape[0] - 1):
        first = bounds[s]
        last = bounds[s + 1] - 1
        out_bounds[s] = m
        out[m, 0] = xy[first, 0]
        out[m, 1] = xy[first, 1]
        m += 1
        next_at = spacing  # arc length of the next sample
        walked = 0.0
        for i in range(first, last):
            x0 = xy[i, 0]
            y0 = xy[i, 1]
            dx = xy[i + 1, 0] - x0
            dy = xy[i + 1, 1] - y0
            seg = math.sqrt(dx * dx + dy * dy)
            while seg > 0.0 and next_at <= walked + seg:
                u = (next_at - walked) / seg
                out[m, 0] = x0 + u * dx
                out[m, 1] = y0 + u * dy
                m += 1
                next_at += spacing
            walked += seg
        # the last point always ends the stroke (a one-point stroke comes out as its point twice, as in
        # Google's simplified files); drop a sample that landed (almost) on it
        if walked - (next_at - spacing) < 1e-9 * max(spacing, 1.0) and m - out_bounds[s] > 1:
            m -= 1
        out[m, 0] = xy[last, 0]
        out[m, 1] = xy[last, 1]
        m += 1
    out_bounds[bounds.shape[0] - 1] = m
    return m


def resample(sketch: Sketch, spacing: float = 1.0) -> Sketch:
    """Resample every stroke at equal arc-length ``spacing`` (sketch units) from its first point, ending on its
    last point; every output stroke has at least two points (a dot's point is repeated)."""
    if not spacing > 0:
        raise R2CNNError(f"resampling spacing must be > 0, not {spacing}")
    pts = sketch.points
    if len(pts) == 0:
        return sketch.copy()
    bounds = sketch.stroke_bounds
    xy = np.ascontiguousarray(pts[:, :2], dtype=np.float64)
    # an upper bound of the output size: a stroke of length L gives at most L / spacing + 2 points
    total = float(np.hypot(np.diff(xy[:, 0]), np.diff(xy[:, 1])).sum()) if len(xy) > 1 else 0.0
    out = np.empty((int(total / spacing) + 2 * len(bounds) + 2, 2))
    out_bounds = np.empty(len(bounds), np.int64)
    m = _resample_kernel(xy, bounds, float(spacing), out, out_bounds)
    res = np.zeros((m, 3), np.float32)
    res[:, :2] = out[:m]
    res[out_bounds[1:] - 1, 2] = 1.0
    return with_points(sketch, res)


def raw_to_simplified(sketch: Sketch, epsilon: float = 2.0, spacing: float | None = 1.0) -> Sketch:
    """Google's Quick, Draw! preprocessing (github.com/googlecreativelab/quickdraw-dataset, "simplified"):

    1. align to the top-left corner (min x = min y = 0);
    2. scale uniformly so the longest side spans 0..255;
    3. resample every stroke at 1-pixel spacing;
    4. simplify every stroke with RDP, epsilon 2.0;
    and round to integers (the published files hold ints). Returns float32 points holding integer values.
    ``spacing=None`` skips step 3, for input already sampled densely (the built-in generator's).
    The agreement with Google's own files is measured by :mod:`r2cnn.bench.simplify_agreement`.
    """
    pts = sketch.points
    if len(pts) == 0:
        raise R2CNNError("cannot simplify an empty sketch (no points)")
    x0, y0, x1, y1 = bbox(pts)
    size = max(x1 - x0, y1 - y0)
    scale = 255.0 / size if size > 0 else 0.0
    aligned = pts.copy()
    aligned[:, 0] = (pts[:, 0] - x0) * scale
    aligned[:, 1] = (pts[:, 1] - y0) * scale
    out = with_points(sketch, aligned)
    out = simplify(out if spacing is None else resample(out, spacing), epsilon)
    out.points[:, :2] = np.rint(out.points[:, :2])
    return out
