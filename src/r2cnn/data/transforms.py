"""Preprocessing and augmentation of :class:`~r2cnn.sketch.Sketch` objects (docs/architecture.md "The data path").

Every function takes a sketch (and, when random, a ``numpy.random.Generator``) and returns a *new* sketch; the
input is never modified. Points are float32 ``(N, 3)`` = x, y, pen_end (see :mod:`r2cnn.sketch`).

- :func:`normalize`: into [-1, 1]^2, longest side fitted, centred, y down (the raster module's convention).
- :func:`rdp`, :func:`simplify`: Ramer-Douglas-Peucker per stroke, with an optional cap on the point count
  (paper Sec. 4.1: TU-Berlin sketches simplified to at most 448 points).
- :func:`raw_to_simplified`: Google's Quick, Draw! raw -> simplified pipeline (coordinates 0..255 ints).
- Augmentation as in Sketch-a-Net v2 (Yu et al., IJCV 2017) and the paper's Sec. 4.1: :func:`flip_horizontal`,
  :func:`remove_strokes`, :func:`deform` (per-stroke and whole-sketch), and :func:`shuffle_strokes` (the
  Random-Stroke-Order ablation of Table 2).
- :func:`make_transform`: the picklable per-sample pipeline used by the data loader
  (simplify -> augment -> stroke order -> normalize).

The per-point loops (RDP, resampling, deformation) are numba kernels (compiled once, cached on disk): they run
per sample inside data-loader workers, so they must cost microseconds, not milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch

__all__ = [
    "normalize", "rdp", "rdp_thresholds", "simplify", "resample", "raw_to_simplified",
    "flip_horizontal", "remove_strokes", "deform", "shuffle_strokes", "SketchTransform", "make_transform",
]


# ----------------------------------------------------------------------------------------------------------------
# small helpers on the packed (N, 3) layout

def _with_points(sketch: Sketch, points: np.ndarray) -> Sketch:
    return Sketch(points, sketch.label, dict(sketch.meta))


def _stroke_ids(points: np.ndarray) -> np.ndarray:
    """int64 ``(N,)``: index of the stroke each point belongs to (pen_end closes a stroke)."""
    pen = (points[:, 2] > 0.5).astype(np.int64)
    return np.cumsum(pen) - pen


def _pen_end_from_ids(stroke_ids: np.ndarray) -> np.ndarray:
    """float32 ``(N,)`` pen_end column for points grouped by consecutive ``stroke_ids``."""
    pen = np.ones(len(stroke_ids), np.float32)
    if len(stroke_ids) > 1:
        pen[:-1] = stroke_ids[1:] != stroke_ids[:-1]
    return pen


def _stroke_lengths(points: np.ndarray, stroke_ids: np.ndarray, num_strokes: int) -> np.ndarray:
    """float64 ``(S,)`` polyline length of every stroke."""
    if len(points) < 2:
        return np.zeros(num_strokes)
    seg = np.hypot(np.diff(points[:, 0]), np.diff(points[:, 1])).astype(np.float64)
    seg *= points[:-1, 2] < 0.5  # no segment joins the end of one stroke to the start of the next
    return np.bincount(stroke_ids[:-1], weights=seg, minlength=num_strokes)


def _bbox(points: np.ndarray) -> tuple[float, float, float, float]:
    """``(min x, min y, max x, max y)``; per column, which is several times faster than ``min(axis=0)`` on the
    strided ``(N, 2)`` view."""
    x, y = points[:, 0], points[:, 1]
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())



# ----------------------------------------------------------------------------------------------------------------
# normalisation

_FLOAT32_TINY = float(np.finfo(np.float32).tiny)

def normalize(sketch: Sketch, margin: float = 0.05) -> Sketch:
    """Map the sketch into [-1, 1]^2: the bounding box's longest side spans [-1 + margin, 1 - margin], centred.

    ``scale = (2 - 2 * margin) / max(w, h)`` applied around the bounding-box centre; y keeps pointing down. A
    sketch whose points all coincide goes to the origin, and so does one whose extent is below float32's smallest
    normal number (~1.2e-38): its scale would overflow float32 (inf x 0 = NaN at the centre), and such a drawing is
    a dot at any real scale. Returns a new float32 sketch (pen_end unchanged), always finite.
    """
    pts = sketch.points
    if len(pts) == 0:
        raise R2CNNError("cannot normalise an empty sketch (no points)")
    x0, y0, x1, y1 = _bbox(pts)
    size = max(x1 - x0, y1 - y0)
    scale = (2.0 - 2.0 * margin) / size if size >= _FLOAT32_TINY else 0.0
    out = pts.copy()
    out[:, 0] = (pts[:, 0] - (x0 + x1) * 0.5) * scale
    out[:, 1] = (pts[:, 1] - (y0 + y1) * 0.5) * scale
    return _with_points(sketch, out)


# ----------------------------------------------------------------------------------------------------------------
# Ramer-Douglas-Peucker

@njit(cache=True, nogil=True)
def _rdp_thresholds_kernel(xy, bounds, segment_distance, floor, thr):
    """For each interior point, the largest epsilon at which RDP would still drop it is ``thr`` (kept iff
    ``thr > epsilon``). RDP's recursion tree does not depend on epsilon (it always splits at the farthest point),
    so one full recursion answers every epsilon: a point is kept iff its own distance and those of all the split
    points above it exceed epsilon, i.e. ``thr = min(own distance, parent's thr)``. Below ``floor`` the recursion
    stops (those points keep their initial ``thr``, 0): every epsilon >= floor drops them anyway."""
    n = xy.shape[0]
    stack_a = np.empty(n, np.int64)
    stack_b = np.empty(n, np.int64)
    stack_t = np.empty(n, np.float64)
    for s in range(bounds.shape[0] - 1):
        first = bounds[s]
        last = bounds[s + 1] - 1
        if last - first < 2:
            continue
        stack_a[0] = first
        stack_b[0] = last
        stack_t[0] = np.inf
        sp = 1
        while sp > 0:
            sp -= 1
            a = stack_a[sp]
            b = stack_b[sp]
            t = stack_t[sp]
            ax = xy[a, 0]
            ay = xy[a, 1]
            dx = xy[b, 0] - ax
            dy = xy[b, 1] - ay
            len2 = dx * dx + dy * dy
            best = -1.0
            k = a + 1
            for i in range(a + 1, b):
                px = xy[i, 0] - ax
                py = xy[i, 1] - ay
                if len2 == 0.0:
                    d2 = px * px + py * py
                elif segment_distance:
                    u = (px * dx + py * dy) / len2
                    u = min(max(u, 0.0), 1.0)
                    ex = px - u * dx
                    ey = py - u * dy
                    d2 = ex * ex + ey * ey
                else:
                    c = px * dy - py * dx
                    d2 = c * c / len2
                if d2 > best:
                    best = d2
                    k = i
            tk = min(math.sqrt(best), t)
            thr[k] = tk
            if tk <= floor:
                continue
            if k - a > 1:
                stack_a[sp] = a
                stack_b[sp] = k
                stack_t[sp] = tk
                sp += 1
            if b - k > 1:
                stack_a[sp] = k
                stack_b[sp] = b
                stack_t[sp] = tk
                sp += 1


def rdp_thresholds(points: np.ndarray, bounds: np.ndarray | None = None, *,
                   segment_distance: bool = False, floor: float = -1.0) -> np.ndarray:
    """float64 ``(N,)``: RDP with tolerance ``epsilon`` keeps point i iff ``thresholds[i] > epsilon``.

    ``points``: ``(N, >=2)`` x, y (a ``(N, 3)`` sketch array gives its strokes from pen_end unless ``bounds``,
    int64 ``(S+1,)`` stroke starts plus end, is given; a ``(N, 2)`` array without bounds is one stroke).
    Stroke end points get ``inf``. With ``floor`` >= 0, thresholds <= floor are only known to be <= floor
    (reported as 0 or a value <= floor): enough for any ``epsilon >= floor``, and faster.

    Distances are to the infinite line through the chord (the textbook RDP; it reproduces Google's simplified
    Quick, Draw! files, see :mod:`r2cnn.bench.simplify_agreement`), or to the point when the chord's ends
    coincide; ``segment_distance=True`` measures to the chord *segment* instead (the distance to the segment's
    nearest end for points beyond it).
    """
    xy = np.ascontiguousarray(points[:, :2], dtype=np.float64)
    if bounds is None:
        bounds = (Sketch(points).stroke_bounds if points.shape[1] >= 3
                  else np.array([0, len(points)], np.int64))
    bounds = np.asarray(bounds, np.int64)
    thr = np.zeros(len(xy))
    thr[bounds[:-1]] = np.inf
    thr[bounds[1:] - 1] = np.inf
    _rdp_thresholds_kernel(xy, bounds, segment_distance, float(floor), thr)
    return thr


def rdp(points_xy: np.ndarray, epsilon: float, *, segment_distance: bool = False) -> np.ndarray:
    """Indices (int64, increasing) of the points of one polyline ``(N, 2)`` that RDP with ``epsilon`` keeps.

    The first and last points are always kept; an interior point is kept when its distance exceeds
    ``epsilon`` at its level of the recursion (strict ``>``, as in the original algorithm).
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    return np.flatnonzero(rdp_thresholds(pts, segment_distance=segment_distance) > epsilon)


def _cap_keep(thr: np.ndarray, bounds: np.ndarray, lengths: np.ndarray, max_points: int) -> np.ndarray:
    """Keep mask with at most ``max_points`` points (``1 <= max_points <`` the sketch's point count), never none.

    While the cap allows every stroke's end points, it is the smallest RDP epsilon that meets the cap: interior
    points go in the order of their thresholds (equal thresholds go together, as when RDP is re-run with a larger
    epsilon). Below that, no interior point is left and end points go, shortest strokes first (equal lengths: the
    later stroke first), exactly ``max_points`` staying: first every stroke's last point, so strokes become dots and
    each stroke keeps at least one point; only with a cap below the number of strokes do whole strokes go (their
    remaining point), shortest first. Lengths are ranked, not mixed into the thresholds, so any coordinate scale
    and any tie keep exactly this order.
    """
    num_strokes = len(bounds) - 1
    ends = np.zeros(len(thr), bool)
    ends[bounds[:-1]] = True
    ends[bounds[1:] - 1] = True
    spare = max_points - int(np.count_nonzero(ends))
    if spare >= 0:
        interior = thr[~ends]
        keep = ends.copy()
        if spare > 0:  # the largest epsilon that still keeps ``spare`` interior points (ties beyond it go too)
            cut = np.partition(interior, len(interior) - spare - 1)[len(interior) - spare - 1]
            keep[~ends] = interior > cut
        return keep
    # strokes from shortest to longest (equal lengths: later first); a one-point stroke's point counts as its first
    by_length = np.lexsort((-np.arange(num_strokes), lengths))
    last = bounds[1:][by_length] - 1
    last = last[last != bounds[:-1][by_length]]
    drop_order = np.concatenate([last, bounds[:-1][by_length]])
    keep = ends.copy()
    keep[drop_order[:len(drop_order) - max_points]] = False
    return keep


def simplify(sketch: Sketch, epsilon: float = 2.0, max_points: int | None = None, *,
             segment_distance: bool = False) -> Sketch:
    """RDP per stroke with tolerance ``epsilon`` (in the sketch's units); with ``max_points``, epsilon is raised
    as little as needed for the sketch to have at most ``max_points`` points (paper Sec. 4.1: 448 for TU-Berlin).

    Equivalent to re-running RDP with growing epsilon until the cap holds, but done in one pass from
    :func:`rdp_thresholds`. Stroke end points survive any epsilon; see :func:`_cap_keep` for the rare case where
    the cap is below twice the number of strokes (strokes become dots, then the shortest go whole). The result
    is never empty for a non-empty sketch.
    """
    if max_points is not None and max_points < 1:
        raise R2CNNError(f"max_points must be >= 1, not {max_points}")
    pts = sketch.points
    if len(pts) == 0:
        return sketch.copy()
    bounds = sketch.stroke_bounds
    # the cap only ever raises epsilon, so the recursion can stop at epsilon itself
    thr = rdp_thresholds(pts, bounds, segment_distance=segment_distance, floor=epsilon)
    keep = thr > epsilon
    sid = _stroke_ids(pts)
    if max_points is not None and np.count_nonzero(keep) > max_points:
        keep = _cap_keep(thr, bounds, _stroke_lengths(pts, sid, len(bounds) - 1), int(max_points))
    out = pts[keep]
    out[:, 2] = _pen_end_from_ids(sid[keep])
    return _with_points(sketch, out)


# ----------------------------------------------------------------------------------------------------------------
# Google's raw -> simplified pipeline

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
    return _with_points(sketch, res)


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
    x0, y0, x1, y1 = _bbox(pts)
    size = max(x1 - x0, y1 - y0)
    scale = 255.0 / size if size > 0 else 0.0
    aligned = pts.copy()
    aligned[:, 0] = (pts[:, 0] - x0) * scale
    aligned[:, 1] = (pts[:, 1] - y0) * scale
    out = _with_points(sketch, aligned)
    out = simplify(out if spacing is None else resample(out, spacing), epsilon)
    out.points[:, :2] = np.rint(out.points[:, :2])
    return out


# ----------------------------------------------------------------------------------------------------------------
# augmentation (Sketch-a-Net v2, Yu et al. 2017; paper Sec. 4.1) and stroke order (paper Table 2)

def flip_horizontal(sketch: Sketch, rng: np.random.Generator | None = None) -> Sketch:
    """Mirror left-right about the bounding box's vertical centre line (``rng`` unused; kept for uniformity)."""
    pts = sketch.points.copy()
    if len(pts):
        pts[:, 0] = pts[:, 0].min() + pts[:, 0].max() - pts[:, 0]
    return _with_points(sketch, pts)


def _take_strokes(sketch: Sketch, order: np.ndarray) -> Sketch:
    """The strokes listed in ``order`` (indices into the sketch's strokes), in that order."""
    bounds = sketch.stroke_bounds
    starts, lengths = bounds[:-1][order], np.diff(bounds)[order]
    new_starts = np.cumsum(lengths) - lengths
    idx = np.repeat(starts - new_starts, lengths) + np.arange(int(lengths.sum()))
    out = sketch.points[idx]
    out[np.cumsum(lengths) - 1, 2] = 1.0  # an unterminated last stroke is terminated once it moves
    return _with_points(sketch, out)


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
    lengths = _stroke_lengths(sketch.points, _stroke_ids(sketch.points), s)
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
    x0, y0, x1, y1 = _bbox(pts)
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
    return _with_points(sketch, out)


# ----------------------------------------------------------------------------------------------------------------
# the per-sample pipeline

STROKE_ORDERS = ("human", "random")


@dataclass(frozen=True)
class SketchTransform:
    """``(sketch, rng) -> Sketch``: simplify -> augment -> stroke order -> :func:`normalize`. Picklable.

    Built by :func:`make_transform`; see there for the fields. ``rng`` may be ``None`` when nothing random is
    enabled (evaluation in human stroke order).
    """

    train: bool
    max_points: int | None = None
    rdp_epsilon: float | None = None
    flip: float = 0.0
    stroke_removal: float = 0.0
    deform: float = 0.0
    stroke_order: str = "human"
    margin: float = 0.05

    @property
    def needs_rng(self) -> bool:
        augment = self.train and (self.flip > 0 or self.stroke_removal > 0 or self.deform > 0)
        return augment or self.stroke_order == "random"

    def __call__(self, sketch: Sketch, rng: np.random.Generator | None = None) -> Sketch:
        if rng is None and self.needs_rng:
            raise R2CNNError("this transform is random: pass a numpy Generator (seeded per sample)")
        if self.max_points is not None or self.rdp_epsilon is not None:
            sketch = simplify(sketch, 0.0 if self.rdp_epsilon is None else self.rdp_epsilon, self.max_points)
        if self.train:
            # one uniform draw per augmentation, always consumed, so each one's randomness is independent of
            # whether the others fired
            u_flip, u_remove, u_deform = rng.random(3) if self.needs_rng else (1.0, 1.0, 1.0)
            if u_flip < self.flip:
                sketch = flip_horizontal(sketch)
            if u_remove < self.stroke_removal:
                sketch = remove_strokes(sketch, rng)
            if u_deform < self.deform:
                sketch = deform(sketch, rng)
        if self.stroke_order == "random":
            sketch = shuffle_strokes(sketch, rng)
        return normalize(sketch, self.margin)


def make_transform(train: bool, *, max_points: int | None = None, rdp_epsilon: float | None = None,
                   flip: float = 0.0, stroke_removal: float = 0.0, deform: float = 0.0,
                   stroke_order: str = "human", margin: float = 0.05) -> SketchTransform:
    """The data loader's per-sample transform ``(sketch, rng) -> Sketch``, ending in :func:`normalize`.

    - ``max_points`` / ``rdp_epsilon``: :func:`simplify` first when either is set (epsilon defaults to 0, i.e.
      only collinear points are dropped, when only the cap is given; paper Sec. 4.1: TU-Berlin at most 448).
    - ``flip``, ``stroke_removal``, ``deform``: probabilities (each in [0, 1]) of applying
      :func:`flip_horizontal`, :func:`remove_strokes`, :func:`deform` to a training sample; ignored when
      ``train`` is False.
    - ``stroke_order``: ``"human"`` keeps the drawing order; ``"random"`` shuffles strokes, in training *and*
      evaluation (it is the Random-Stroke-Order model's input, paper Table 2).
    - ``margin``: see :func:`normalize`.
    """
    for name, p in (("flip", flip), ("stroke_removal", stroke_removal), ("deform", deform)):
        if not 0.0 <= p <= 1.0:
            raise R2CNNError(f"transform option {name} is a probability in [0, 1], not {p}")
    if stroke_order not in STROKE_ORDERS:
        raise R2CNNError(f"stroke_order must be one of {', '.join(STROKE_ORDERS)}, not {stroke_order!r}")
    if max_points is not None and max_points < 1:
        raise R2CNNError(f"max_points must be >= 1, not {max_points}")
    if rdp_epsilon is not None and rdp_epsilon < 0:
        raise R2CNNError(f"rdp_epsilon must be >= 0, not {rdp_epsilon}")
    if not 0.0 <= margin < 1.0:
        raise R2CNNError(f"margin must be in [0, 1), not {margin}")
    return SketchTransform(bool(train), None if max_points is None else int(max_points),
                           None if rdp_epsilon is None else float(rdp_epsilon), float(flip), float(stroke_removal),
                           float(deform), stroke_order, float(margin))
