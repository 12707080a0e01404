"""Ramer-Douglas-Peucker simplification per stroke, with an optional cap on the point count (paper Sec. 4.1:
TU-Berlin sketches simplified to at most 448 points)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from r2cnn.data.transforms.layout import pen_end_from_ids, stroke_ids, stroke_lengths, with_points
from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch


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
    sid = stroke_ids(pts)
    if max_points is not None and np.count_nonzero(keep) > max_points:
        keep = _cap_keep(thr, bounds, stroke_lengths(pts, sid, len(bounds) - 1), int(max_points))
    out = pts[keep]
    out[:, 2] = pen_end_from_ids(sid[keep])
    return with_points(sketch, out)
