"""CPU backend: numba kernels, parallel over sketches (geometry) and over entries/points (render).

Geometry visits, per segment, only the pixels near it: row by row, the columns within ``eps`` (+ slack) of the
part of the segment that is within ``eps`` of the row, then applies the exact coverage test of
:mod:`r2cnn.raster.geometry`. For "last", each sketch first marks the owner of every stroke pixel (a later
segment overwrites) in a per-thread ``H*W`` scratch that stays in cache (a dense ``B*H*W`` owner map would cost
page faults on every call), then writes the owned pixels; a prefix sum over the counts places the sketches'
entries. For "max", a counting pass sizes each segment's slice and a second pass fills it.

Small jobs run on the calling thread only: on a busy machine, waking a second thread for a sub-millisecond job
can cost a whole scheduler time slice. Results never depend on the number of threads.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
from numba import get_num_threads, njit, prange, set_num_threads

from r2cnn.raster.geometry import CANDIDATE_SLACK, Geometry, index_dtype, segment_ends

_MARK, _COUNT, _WRITE = 0, 1, 2


@njit(cache=True, nogil=True)
def _visit_segment(i, n, base, u, v, h, w, eps, mode, last, owner, start, pixel, segment, alpha):
    """Run pass ``mode`` for the segment from point ``i`` to point ``n`` (``n == i``: a dot); returns the number
    of entries it has (``_COUNT``) or writes them from ``start`` on (``_WRITE``)."""
    ax, ay, bx, by = u[i], v[i], u[n], v[n]
    dx, dy = bx - ax, by - ay
    l2 = dx * dx + dy * dy
    eps2 = eps * eps
    reach = eps + CANDIDATE_SLACK
    r0 = max(0, int(math.floor(min(ay, by) - reach - 0.5)))
    r1 = min(h - 1, int(math.ceil(max(ay, by) + reach - 0.5)))
    k = start
    for r in range(r0, r1 + 1):
        py = r + 0.5
        if dy == 0.0:
            if abs(py - ay) > reach:
                continue
            xlo, xhi = min(ax, bx), max(ax, bx)
        else:  # the part of the segment within `reach` of this row, in x
            t1, t2 = (py - reach - ay) / dy, (py + reach - ay) / dy
            tlo, thi = max(0.0, min(t1, t2)), min(1.0, max(t1, t2))
            if tlo > thi:
                continue
            xlo, xhi = min(ax + tlo * dx, ax + thi * dx), max(ax + tlo * dx, ax + thi * dx)
        j0 = max(0, int(math.floor(xlo - reach - 0.5)))
        j1 = min(w - 1, int(math.ceil(xhi + reach - 0.5)))
        for j in range(j0, j1 + 1):
            px = j + 0.5
            t = ((px - ax) * dx + (py - ay) * dy) / l2 if l2 > 0.0 else 0.0
            t = min(max(t, 0.0), 1.0)
            ex, ey = (px - ax) - t * dx, (py - ay) - t * dy
            if ex * ex + ey * ey > eps2:
                continue
            q = r * w + j
            if mode == _MARK:
                owner[q] = i
            elif not last or owner[q] == i:
                if mode == _WRITE:
                    pixel[k] = base + q
                    segment[k] = i
                    alpha[k] = t
                k += 1
    return k - start


@njit(cache=True, nogil=True)
def _mark_sketch(u, v, end, lo, hi, h, w, eps, owner):
    """Pass "mark" for one sketch: ``owner`` (its ``H*W`` pixels) holds the latest segment covering each pixel.
    Pixels no segment covers keep stale values, but later passes read only pixels some segment covers."""
    dummy_i = np.zeros(0, np.int64)
    for i in range(lo, hi):
        if end[i] >= 0:
            _visit_segment(i, end[i], 0, u, v, h, w, eps, _MARK, True, owner, 0, dummy_i, dummy_i, dummy_i)


@njit(parallel=True, cache=True)
def _last_entries(u, v, end, offsets, h, w, eps, counts, pixel, segment, alpha, nchunks):
    """"last": per sketch, mark the owners, then write the owned entries, segment by segment, from ``b*H*W`` on
    (a sketch has at most ``H*W`` of them); ``counts`` gets the entries per segment."""
    nb = offsets.size - 1
    for chunk in prange(nchunks):
        owner = np.empty(h * w, np.int64)
        for b in range(chunk * nb // nchunks, (chunk + 1) * nb // nchunks):
            _mark_sketch(u, v, end, offsets[b], offsets[b + 1], h, w, eps, owner)
            k = b * h * w
            for i in range(offsets[b], offsets[b + 1]):
                if end[i] >= 0:
                    counts[i] = _visit_segment(i, end[i], b * h * w, u, v, h, w, eps, _WRITE, True, owner, k, pixel,
                                               segment, alpha)
                    k += counts[i]


@njit(parallel=True, cache=True)
def _compact(offsets, ptr, h, w, pixel, segment, alpha, out_pixel, out_segment, out_alpha):
    """Move sketch b's entries from ``b*H*W`` to their final place ``ptr[offsets[b]]``."""
    for b in prange(offsets.size - 1):
        lo, hi = ptr[offsets[b]], ptr[offsets[b + 1]]
        src = b * h * w
        out_pixel[lo:hi] = pixel[src:src + hi - lo]
        out_segment[lo:hi] = segment[src:src + hi - lo]
        out_alpha[lo:hi] = alpha[src:src + hi - lo]


@njit(parallel=True, cache=True)
def _max_count(u, v, end, offsets, h, w, eps, counts, nchunks):
    """"max": candidates per segment into ``counts``."""
    dummy_i = np.zeros(0, np.int64)
    dummy_f = np.zeros(0, np.float32)
    nb = offsets.size - 1
    for chunk in prange(nchunks):
        for b in range(chunk * nb // nchunks, (chunk + 1) * nb // nchunks):
            for i in range(offsets[b], offsets[b + 1]):
                if end[i] >= 0:
                    counts[i] = _visit_segment(i, end[i], 0, u, v, h, w, eps, _COUNT, False, dummy_i, 0, dummy_i,
                                               dummy_i, dummy_f)


@njit(parallel=True, cache=True)
def _max_fill(u, v, end, offsets, h, w, eps, ptr, pixel, segment, alpha, pixel_order, nchunks):
    """"max": write every segment's candidates into its slice ``[ptr[i], ptr[i+1])``, then sort each sketch's
    entries by pixel (stable: by segment within a pixel) into ``pixel_order``."""
    dummy_i = np.zeros(0, np.int64)
    nb = offsets.size - 1
    for chunk in prange(nchunks):
        for b in range(chunk * nb // nchunks, (chunk + 1) * nb // nchunks):
            for i in range(offsets[b], offsets[b + 1]):
                if end[i] >= 0:
                    _visit_segment(i, end[i], b * h * w, u, v, h, w, eps, _WRITE, False, dummy_i, ptr[i], pixel,
                                   segment, alpha)
            lo, hi = ptr[offsets[b]], ptr[offsets[b + 1]]
            pixel_order[lo:hi] = np.argsort(pixel[lo:hi], kind="mergesort") + lo


def geometry(points: torch.Tensor, offsets: torch.Tensor, size, eps: float, overlap: str) -> Geometry:
    """See :func:`r2cnn.raster.geometry`; inputs already checked, CPU tensors."""
    h, w = size
    p, b = points.shape[0], offsets.numel() - 1
    u, v, end = (t.numpy() for t in segment_ends(points, offsets, size))
    offs = offsets.to(torch.int64).numpy()
    nchunks = max(1, min(b, get_num_threads()))
    pixel_type = np.int32 if index_dtype(b * h * w) == torch.int32 else np.int64
    segment_type = np.int32 if index_dtype(p) == torch.int32 else np.int64
    counts = np.zeros(p, np.int64)
    ptr = np.zeros(p + 1, np.int64)
    if overlap == "last":
        # written at b*H*W first (only the touched pages of these buffers are ever mapped), then compacted
        spread = (np.empty(b * h * w, pixel_type), np.empty(b * h * w, segment_type), np.empty(b * h * w, np.float32))
        _last_entries(u, v, end, offs, h, w, eps, counts, *spread, nchunks)
        np.cumsum(counts, out=ptr[1:])
        e = int(ptr[-1])
        pixel, segment, alpha = np.empty(e, pixel_type), np.empty(e, segment_type), np.empty(e, np.float32)
        _compact(offs, ptr, h, w, *spread, pixel, segment, alpha)
        order = None
    else:
        _max_count(u, v, end, offs, h, w, eps, counts, nchunks)
        np.cumsum(counts, out=ptr[1:])
        e = int(ptr[-1])
        pixel, segment, alpha = np.empty(e, pixel_type), np.empty(e, segment_type), np.empty(e, np.float32)
        pixel_order = np.empty(e, np.int64)
        _max_fill(u, v, end, offs, h, w, eps, ptr, pixel, segment, alpha, pixel_order, nchunks)
        order = torch.from_numpy(pixel_order).to(index_dtype(e))
    return Geometry((h, w), eps, overlap, offsets.to(torch.int64), torch.from_numpy(pixel), torch.from_numpy(segment),
                    torch.from_numpy(alpha), torch.from_numpy(ptr), order)


_PARALLEL_MIN_WORK = 1 << 18  # entry-channels (render) below which one thread is faster than waking others


@contextmanager
def _threads(work: int):
    """Run numba kernels inside with all threads for big ``work``, with one thread otherwise."""
    saved = get_num_threads()
    set_num_threads(saved if work >= _PARALLEL_MIN_WORK else 1)
    try:
        yield get_num_threads()
    finally:
        set_num_threads(saved)


@njit(parallel=True, cache=True)
def _forward_last(pixel, segment, alpha, a, out, nchunks):
    """Eq. (1) into ``out`` (B*H*W, C); "last" has one entry per pixel, so chunks never write the same place."""
    e_total, c = pixel.size, a.shape[1]
    last_point = a.shape[0] - 1
    one = a.dtype.type(1)
    for chunk in prange(nchunks):
        for e in range(chunk * e_total // nchunks, (chunk + 1) * e_total // nchunks):
            s = segment[e]
            n = min(s + 1, last_point)
            al = a.dtype.type(alpha[e])
            p = pixel[e]
            for ch in range(c):
                out[p, ch] = (one - al) * a[s, ch] + al * a[n, ch]


@njit(parallel=True, cache=True)
def _forward_max(pixel, segment, alpha, pixel_order, ptr, offsets, a, out, wins, nchunks):
    """Per sketch, walk its entries in (pixel, segment) order; per pixel keep the largest value (ties: latest)."""
    c = a.shape[1]
    last_point = a.shape[0] - 1
    one = a.dtype.type(1)
    nb = offsets.size - 1
    for chunk in prange(nchunks):
        for b in range(chunk * nb // nchunks, (chunk + 1) * nb // nchunks):
            lo, hi = ptr[offsets[b]], ptr[offsets[b + 1]]
            k = lo
            while k < hi:
                p = pixel[pixel_order[k]]
                g_end = k
                while g_end < hi and pixel[pixel_order[g_end]] == p:
                    g_end += 1
                for ch in range(c):
                    best_e = -1
                    best = a.dtype.type(0)
                    for q in range(k, g_end):
                        e = pixel_order[q]
                        s = segment[e]
                        al = a.dtype.type(alpha[e])
                        val = (one - al) * a[s, ch] + al * a[min(s + 1, last_point), ch]
                        if best_e < 0 or val >= best:
                            best, best_e = val, e
                    out[p, ch] = best
                    wins[best_e, ch] = True
                k = g_end


@njit(parallel=True, cache=True)
def _backward(pixel, segment, alpha, offsets, ptr, grad, wins, out, nchunks):
    """Eq. (3): each entry adds ``(1 - alpha) * grad`` to a_i and ``alpha * grad`` to a_{i+1}, entries in
    (segment, pixel) order. Chunks are whole sketches (segments never cross them), so each point is summed by one
    thread in one fixed order whatever the number of threads. ``wins`` (E, C) masks non-winning "max" candidates
    (empty for "last")."""
    masked = wins.shape[0] > 0
    one = grad.dtype.type(1)
    c = out.shape[1]
    nb = offsets.size - 1
    for chunk in prange(nchunks):
        p0, p1 = offsets[chunk * nb // nchunks], offsets[(chunk + 1) * nb // nchunks]
        out[p0:p1, :] = 0
        for e in range(ptr[p0], ptr[p1]):
            s, px = segment[e], pixel[e]
            al = grad.dtype.type(alpha[e])
            to_next = al != 0 and s + 1 < p1  # a dot (alpha 0) has no second point
            for ch in range(c):
                if masked and not wins[e, ch]:
                    continue
                g = grad[px, ch]
                out[s, ch] += g * (one - al)
                if to_next:
                    out[s + 1, ch] += g * al


def forward(geo: Geometry, intensities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    h, w = geo.size
    a = intensities.detach().contiguous()
    c = a.shape[1]
    out = torch.zeros(geo.batch_size * h * w, c, dtype=a.dtype)
    args = (geo.pixel.numpy(), geo.segment.numpy(), geo.alpha.numpy())
    with _threads(geo.num_entries * c) as nchunks:
        if geo.overlap == "last":
            _forward_last(*args, a.numpy(), out.numpy(), nchunks)
            return out, None
        wins = torch.zeros(geo.num_entries, c, dtype=torch.bool)
        _forward_max(*args, geo.pixel_order.numpy(), geo.segment_ptr.numpy(), geo.offsets.numpy(), a.numpy(),
                     out.numpy(), wins.numpy(), min(nchunks, max(1, geo.batch_size)))
    return out, wins


def backward(geo: Geometry, grad: torch.Tensor, wins: torch.Tensor | None) -> torch.Tensor:
    out = torch.empty(geo.num_points, grad.shape[1], dtype=grad.dtype)
    mask = wins if wins is not None else torch.zeros(0, 1, dtype=torch.bool)
    with _threads(geo.num_entries * grad.shape[1]) as nchunks:
        _backward(geo.pixel.numpy(), geo.segment.numpy(), geo.alpha.numpy(), geo.offsets.numpy(),
                  geo.segment_ptr.numpy(), grad.numpy(), mask.numpy(), out.numpy(), min(nchunks, max(1, geo.batch_size)))
    return out
