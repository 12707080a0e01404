"""Augmentation as in Sketch-a-Net v2 (Yu et al., IJCV 2017) and the paper's Sec. 4.1, and the stroke order of the
Random-Stroke-Order ablation (paper Table 2)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from r2cnn.data.transforms.layout import bbox, stroke_ids, stroke_lengths, with_points
from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch


def flip_horizontal(sketch: Sketch, rng: np.random.Generator | None = None) -> Sketch:
    """Mirror left-right about the bounding box's vertical centre line (``rng`` unused; kept for uniformity)."""
    pts = sketch.points.copy()
    if len(pts):
        pts[:, 0] = pts[:, 0].min() + pts[:, 0].max() - pts[:, 0]
    return with_points(sketch, pts)


def _take_strokes(sketch: Sketch, order: np.ndarray) -> Sketch:
    """The strokes listed in ``order`` (indices into the sketch's strokes), in that order."""
    bounds = sketch.stroke_bounds
    starts, lengths = bounds[:-1][order], np.diff(bounds)[order]
    new_starts = np.cumsum(lengths) - lengths
    idx = np.repeat(starts - new_starts, lengths) + np.arange(int(lengths.sum()))
    out = sketch.points[idx]
    out[np.cumsum(lengths) - 1, 2] = 1.0  # an unterminated last stroke is terminated once it moves
    return with_points(sketch, out)


def remove_strokes(sketch: Sketch, rng: np.random.Generator, max_fraction: float = 0.3,
                   order_weight: float = 1.0, length_weight: float = 1.0) -> Sketch:
    """Drop some strokes, favouring late and short ones (Sketch-a-Net v2's stroke removal).

    Sketch-a-Net v2 removes stroke i with probability proportional to ``exp(alpha * o_i - beta * l_i)``, o the
    drawing order and l the length: people draw the global shape first and details (short, late strokes) last,
    so removing those yields plausible, less detailed sketches. Here ``o_i = i / (S - 1)``, ``l_i`` = length /
    longest stroke's length, ``alpha = order_weight``, ``beta = length_weight``; the number removed is uniform in
    ``1 .. floor(max_fraction * S)`` (none when that is 0), sampled without replacement. At least one stroke stays.
    """
    s = sketch.num_strokes
    k_max = min(int(max_fraction * s), s - 1)
    if k_max < 1:
        return sketch.copy()
    lengths = stroke_lengths(sketch.points, stroke_ids(sketch.points), s)
    o = np.arange(s) / (s - 1)
    l = lengths / max(lengths.max(), 1e-12)
    w = np.exp(order_weight * o - length_weight * l)
    k = int(rng.integers(1, k_max + 1))
    # weighted sampling without replacement by exponential keys (Efraimidis & Spirakis 2006): the k smallest
    # Exp(1) / w are distributed as k successive draws proportional to w, at a fraction of rng.choice's cost
    drop = np.argpartition(rng.exponential(size=s) / w, k - 1)[:k]
    keep = np.ones(s, bool)
    keep[drop] = False
    return _take_strokes(sketch, np.flatnonzero(keep))


def shuffle_strokes(sketch: Sketch, rng: np.random.Generator) -> Sketch:
    """Random stroke order (points within a stroke keep their order): the Random-Stroke-Order input, Table 2."""
    return _take_strokes(sketch, rng.permutation(sketch.num_strokes))


@njit(cache=True, nogil=True)
def _deform_kernel(pts, similarity, shift, bend, bend_scale, matrix, centre, out):
    """Per stroke s: ``similarity[s] = (c, d)`` maps p about the stroke centroid to (c x - d y, d x + c y);
    ``shift[s]`` translates; ``bend[s]`` (K, 2) unit-normal offsets, scaled by ``bend_scale`` x the stroke's
    bounding-box size, at K knots even in arc length, interpolated linearly. Then ``matrix`` about ``centre``."""
    n = pts.shape[0]
    knots = bend.shape[1]
    start = 0
    s = 0
    for i in range(n):
        if not (pts[i, 2] > 0.5 or i == n - 1):
            continue
        end = i + 1
        cx = 0.0
        cy = 0.0
        lox = hix = pts[start, 0]
        loy = hiy = pts[start, 1]
        total = 0.0
        for j in range(start, end):
            cx += pts[j, 0]
            cy += pts[j, 1]
            lox = min(lox, pts[j, 0])
            hix = max(hix, pts[j, 0])
            loy = min(loy, pts[j, 1])
            hiy = max(hiy, pts[j, 1])
            if j > start:
                total += math.hypot(pts[j, 0] - pts[j - 1, 0], pts[j, 1] - pts[j - 1, 1])
        cx /= end - start
        cy /= end - start
        amp = bend_scale * max(hix - lox, hiy - loy)
        c = similarity[s, 0]
        d = similarity[s, 1]
        arc = 0.0
        for j in range(start, end):
            if j > start:
                arc += math.hypot(pts[j, 0] - pts[j - 1, 0], pts[j, 1] - pts[j - 1, 1])
            t = arc / total * (knots - 1) if total > 0 else 0.0
            k = min(int(t), knots - 2)
            f = t - k
            px = pts[j, 0] - cx
            py = pts[j, 1] - cy
            x = cx + c * px - d * py + shift[s, 0] + amp * ((1 - f) * bend[s, k, 0] + f * bend[s, k + 1, 0])
            y = cy + d * px + c * py + shift[s, 1] + amp * ((1 - f) * bend[s, k, 1] + f * bend[s, k + 1, 1])
            out[j, 0] = centre[0] + matrix[0, 0] * (x - centre[0]) + matrix[0, 1] * (y - centre[1])
            out[j, 1] = centre[1] + matrix[1, 0] * (x - centre[0]) + matrix[1, 1] * (y - centre[1])
        s += 1
        start = end


def deform(sketch: Sketch, rng: np.random.Generator, *, global_rotation: float = 10.0,
           global_scale: float = 0.15, global_shear: float = 0.15, stroke_rotation: float = 5.0,
           stroke_scale: float = 0.08, stroke_shift: float = 0.01, stroke_bend: float = 0.04,
           knots: int = 4) -> Sketch:
    """Sketch-a-Net v2's deformation, local (per stroke) then global (whole sketch), as cheap smooth maps.

    Sketch-a-Net v2 moves control points and warps with moving least squares; we use smooth piecewise-linear
    and affine maps with the same intent (plausible hand-drawing variation, topology of each stroke kept):

    - per stroke: a small similarity about the stroke's centroid (rotation uniform in +-``stroke_rotation``
      degrees, scale ``exp(U(-stroke_scale, stroke_scale))``); a Gaussian shift (std ``stroke_shift`` x the
      sketch's size); and a bend: Gaussian offsets (std ``stroke_bend`` x the *stroke's* size, so small strokes
      keep their shape) at ``knots`` control points spaced evenly along the stroke's arc length, interpolated
      linearly in between, so the stroke bends instead of jittering;
    - whole sketch: an affine map about the bounding-box centre: rotation +-``global_rotation`` degrees,
      per-axis scale ``exp(U(-global_scale, global_scale))``, shear uniform in +-``global_shear``.
    """
    if knots < 2:
        raise R2CNNError(f"deform needs knots >= 2, not {knots}")
    pts = sketch.points
    if len(pts) == 0:
        return sketch.copy()
    x0, y0, x1, y1 = bbox(pts)
    centre, size = np.array([(x0 + x1) * 0.5, (y0 + y1) * 0.5]), max(x1 - x0, y1 - y0)
    s = sketch.num_strokes
    u = rng.random((s, 2))
    normal = rng.standard_normal((s, 2 + 2 * knots))
    g = rng.random(4)
    ang = np.deg2rad(stroke_rotation * (2 * u[:, 0] - 1))
    sc = np.exp(stroke_scale * (2 * u[:, 1] - 1))
    similarity = np.stack([np.cos(ang) * sc, np.sin(ang) * sc], axis=1)
    a = np.deg2rad(global_rotation * (2 * g[0] - 1))
    sx, sy = np.exp(global_scale * (2 * g[1:3] - 1))
    shear = global_shear * (2 * g[3] - 1)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    matrix = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sx, sy])
    out = pts.copy()
    _deform_kernel(pts, similarity, normal[:, :2] * (stroke_shift * size),
                   np.ascontiguousarray(normal[:, 2:].reshape(s, knots, 2)), float(stroke_bend), matrix, centre, out)
    return with_points(sketch, out)
