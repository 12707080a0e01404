"""CPU backend: numba kernels over ranges of sketches, run on the calling thread or split over numba's threads.

Geometry visits, per segment, only the pixels near it: row by row, the columns within ``eps`` (+ slack) of the
part of the segment that is within ``eps`` of the row, then applies the exact coverage test of
:mod:`r2cnn.raster.geometry`. For "last", each sketch first marks the owner of every stroke pixel (a later
segment overwrites) in a per-thread ``H*W`` scratch that stays in cache (a dense ``B*H*W`` owner map would cost
page faults on every call), then writes the owned pixels; a prefix sum over the counts places the sketches'
entries. For "max", a counting pass sizes each segment's slice and a second pass fills it.

Threads: each kernel is a serial function over a range ``[lo, hi)`` plus a thin ``prange`` driver that splits the
range. The driver is used only for big jobs (waking threads for a millisecond job costs more than it saves, a
whole scheduler time slice on a busy machine) and only in the main process: numba's OpenMP pool aborts a forked
child (a data-loader worker) that uses it after its parent did. Results never depend on the split.
"""

from __future__ import annotations

import math
import multiprocessing
import threading
from collections import OrderedDict

import numpy as np
import torch
from numba import get_num_threads, njit, prange

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


# --- geometry, per range of sketches [b0, b1) -------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _last_entries(b0, b1, u, v, end, offsets, h, w, eps, counts, pixel, segment, alpha):
    """"last": per sketch, mark the owners, then write the owned entries, segment by segment, from ``b*H*W`` on
    (a sketch has at most ``H*W`` of them); ``counts`` gets the entries per segment."""
    owner = np.empty(h * w, np.int64)
    for b in range(b0, b1):
        _mark_sketch(u, v, end, offsets[b], offsets[b + 1], h, w, eps, owner)
        k = b * h * w
        for i in range(offsets[b], offsets[b + 1]):
            if end[i] >= 0:
                counts[i] = _visit_segment(i, end[i], b * h * w, u, v, h, w, eps, _WRITE, True, owner, k, pixel,
                                           segment, alpha)
                k += counts[i]


@njit(cache=True, nogil=True)
def _compact(b0, b1, offsets, ptr, h, w, pixel, segment, alpha, out_pixel, out_segment, out_alpha):
    """Move sketch b's entries from ``b*H*W`` to their final place ``ptr[offsets[b]]``."""
    for b in range(b0, b1):
        lo, hi = ptr[offsets[b]], ptr[offsets[b + 1]]
        src = b * h * w
        out_pixel[lo:hi] = pixel[src:src + hi - lo]
        out_segment[lo:hi] = segment[src:src + hi - lo]
        out_alpha[lo:hi] = alpha[src:src + hi - lo]


@njit(cache=True, nogil=True)
def _max_count(b0, b1, u, v, end, offsets, h, w, eps, counts):
    """"max": candidates per segment into ``counts``."""
    dummy_i = np.zeros(0, np.int64)
    dummy_f = np.zeros(0, np.float32)
    for i in range(offsets[b0], offsets[b1]):
        if end[i] >= 0:
            counts[i] = _visit_segment(i, end[i], 0, u, v, h, w, eps, _COUNT, False, dummy_i, 0, dummy_i, dummy_i,
                                       dummy_f)


@njit(cache=True, nogil=True)
def _max_fill(b0, b1, u, v, end, offsets, h, w, eps, ptr, pixel, segment, alpha, pixel_order):
    """"max": write every segment's candidates into its slice ``[ptr[i], ptr[i+1])``, then sort each sketch's
    entries by pixel (stable: by segment within a pixel) into ``pixel_order``."""
    dummy_i = np.zeros(0, np.int64)
    for b in range(b0, b1):
        for i in range(offsets[b], offsets[b + 1]):
            if end[i] >= 0:
                _visit_segment(i, end[i], b * h * w, u, v, h, w, eps, _WRITE, False, dummy_i, ptr[i], pixel, segment,
                               alpha)
        lo, hi = ptr[offsets[b]], ptr[offsets[b + 1]]
        pixel_order[lo:hi] = np.argsort(pixel[lo:hi], kind="mergesort") + lo


# --- render -----------------------------------------------------------------------------------------------------

# A sketch image up to this size is zeroed just before its entries are written, while it stays in the core's cache;
# bigger ones are zeroed all at once first. Measured at 48 x 224 x 224: C=1 (200 KB an image) was 1.5x faster per
# sketch, C=8 (1.6 MB an image) 2-6x faster all at once.
HOT_IMAGE_BYTES = 512 * 1024


@njit(cache=True, nogil=True)
def _zero_sketches(b0, b1, num_sketches, out):
    """Zero the images of sketches [b0, b1) in ``out`` (B*H*W, C) with one memset."""
    n = out.size // num_sketches
    out.reshape(-1)[b0 * n:b1 * n] = 0


@njit(cache=True, nogil=True)
def _clear_sketch(b, pixel, ptr, offsets, out):
    """Zero the stroke pixels that sketch b had in a previous render (its entries in that render's geometry)."""
    c = out.shape[1]
    z = out.dtype.type(0)
    for e in range(ptr[offsets[b]], ptr[offsets[b + 1]]):
        p = pixel[e]
        for ch in range(c):
            out[p, ch] = z


@njit(cache=True, nogil=True)
def _forward_last(b0, b1, pixel, alpha, ptr, offsets, a, out, zero, old_pixel, old_ptr, old_offsets):
    """Eq. (1) into ``out`` (B*H*W, C) for sketches [b0, b1): when ``zero`` (``out`` uninitialised), zero the images
    (per sketch or all at once, :data:`HOT_IMAGE_BYTES`), else clear each sketch's pixels of the render ``out`` holds
    (``old_*``: that render's geometry); then write the entries ("last" has one entry per pixel: no write
    conflicts). The C values of a pixel are adjacent, so C channels cost C times the value writes, not C walks over
    the entries."""
    c = a.shape[1]
    last_point = a.shape[0] - 1
    one = a.dtype.type(1)
    num_sketches = offsets.size - 1
    per_sketch = out.size // num_sketches * out.itemsize <= HOT_IMAGE_BYTES
    if zero and not per_sketch:
        _zero_sketches(b0, b1, num_sketches, out)
    flat, values = out.reshape(-1), a.reshape(-1)  # C=1: one value per pixel and per point
    for b in range(b0, b1):
        if zero and per_sketch:
            _zero_sketches(b, b + 1, num_sketches, out)
        elif not zero:
            _clear_sketch(b, old_pixel, old_ptr, old_offsets, out)
        # segment by segment ("last" stores a sketch's entries in segment order, segment i's in [ptr[i], ptr[i+1])),
        # so its two end values are read once, not once per entry
        for i in range(offsets[b], offsets[b + 1]):
            n = min(i + 1, last_point)  # a dot on the very last point has no successor (its alpha is 0)
            if c == 1:  # the common case, in flat arrays: half the time of the general loop
                x0, x1 = values[i], values[n]
                for e in range(ptr[i], ptr[i + 1]):
                    al = a.dtype.type(alpha[e])
                    flat[pixel[e]] = (one - al) * x0 + al * x1
            else:
                for e in range(ptr[i], ptr[i + 1]):
                    al = a.dtype.type(alpha[e])
                    p = pixel[e]
                    for ch in range(c):
                        out[p, ch] = (one - al) * a[i, ch] + al * a[n, ch]


@njit(cache=True, nogil=True)
def _forward_max(b0, b1, pixel, segment, alpha, pixel_order, ptr, offsets, a, out, wins, zero, old_pixel, old_ptr,
                 old_offsets):
    """Per sketch, walk its entries in (pixel, segment) order; per pixel keep the largest value (ties: latest).
    When ``zero``, ``out`` (B*H*W, C) is uninitialised and each sketch's image is zeroed first; else the pixels of
    the render it holds (``old_*``) are cleared first."""
    c = a.shape[1]
    last_point = a.shape[0] - 1
    one = a.dtype.type(1)
    if zero:
        _zero_sketches(b0, b1, offsets.size - 1, out)
    else:
        for b in range(b0, b1):
            _clear_sketch(b, old_pixel, old_ptr, old_offsets, out)
    k, hi = ptr[offsets[b0]], ptr[offsets[b1]]
    while k < hi:
        p = pixel[pixel_order[k]]
        group_end = k
        while group_end < hi and pixel[pixel_order[group_end]] == p:
            group_end += 1
        for ch in range(c):
            best_e = -1
            best = a.dtype.type(0)
            for q in range(k, group_end):
                e = pixel_order[q]
                s = segment[e]
                al = a.dtype.type(alpha[e])
                val = (one - al) * a[s, ch] + al * a[min(s + 1, last_point), ch]
                if best_e < 0 or val >= best:
                    best, best_e = val, e
            out[p, ch] = best
            wins[best_e, ch] = True
        k = group_end


@njit(cache=True, nogil=True)
def _backward(b0, b1, row, alpha, offsets, ptr, grad, out):
    """Eq. (3) segment by segment: the segment from point i sums ``(1 - alpha) * g`` over its entries for a_i and
    ``alpha * g`` for a_{i+1}, in registers, in entry order, where entry e's ``g`` is ``grad[row[e]]``. Channels go
    four at a time while four remain (one walk over the entries serves four channels, four addition chains side by
    side), then one at a time. Ranges are whole sketches (segments never cross them), so every point is summed in one
    fixed order whatever the split."""
    one, zero = grad.dtype.type(1), grad.dtype.type(0)
    c = out.shape[1]
    p0, p1 = offsets[b0], offsets[b1]
    out[p0:p1, :] = 0
    for i in range(p0, p1):
        lo, hi = ptr[i], ptr[i + 1]
        if hi == lo:
            continue
        has_next = i + 1 < p1  # a dot on a sketch's last point adds its zero `following` nowhere
        c0 = 0
        while c0 + 4 <= c:
            o0 = o1 = o2 = o3 = f0 = f1 = f2 = f3 = zero
            for e in range(lo, hi):
                r = row[e]
                al = grad.dtype.type(alpha[e])
                g0, g1, g2, g3 = grad[r, c0], grad[r, c0 + 1], grad[r, c0 + 2], grad[r, c0 + 3]
                o0, o1, o2, o3 = o0 + g0 * (one - al), o1 + g1 * (one - al), o2 + g2 * (one - al), o3 + g3 * (one - al)
                f0, f1, f2, f3 = f0 + g0 * al, f1 + g1 * al, f2 + g2 * al, f3 + g3 * al
            out[i, c0] += o0
            out[i, c0 + 1] += o1
            out[i, c0 + 2] += o2
            out[i, c0 + 3] += o3
            if has_next:
                out[i + 1, c0] += f0
                out[i + 1, c0 + 1] += f1
                out[i + 1, c0 + 2] += f2
                out[i + 1, c0 + 3] += f3
            c0 += 4
        for ch in range(c0, c):
            own, following = zero, zero
            for e in range(lo, hi):
                g = grad[row[e], ch]
                al = grad.dtype.type(alpha[e])
                own += g * (one - al)
                following += g * al
            out[i, ch] += own
            if has_next:
                out[i + 1, ch] += following


# --- parallel drivers: split [0, n) at ``bounds`` over numba's threads ------------------------------------------

@njit(parallel=True, cache=True)
def _last_entries_parallel(bounds, u, v, end, offsets, h, w, eps, counts, pixel, segment, alpha):
    for k in prange(bounds.size - 1):
        _last_entries(bounds[k], bounds[k + 1], u, v, end, offsets, h, w, eps, counts, pixel, segment, alpha)


@njit(parallel=True, cache=True)
def _compact_parallel(bounds, offsets, ptr, h, w, pixel, segment, alpha, out_pixel, out_segment, out_alpha):
    for k in prange(bounds.size - 1):
        _compact(bounds[k], bounds[k + 1], offsets, ptr, h, w, pixel, segment, alpha, out_pixel, out_segment,
                 out_alpha)


@njit(parallel=True, cache=True)
def _max_count_parallel(bounds, u, v, end, offsets, h, w, eps, counts):
    for k in prange(bounds.size - 1):
        _max_count(bounds[k], bounds[k + 1], u, v, end, offsets, h, w, eps, counts)


@njit(parallel=True, cache=True)
def _max_fill_parallel(bounds, u, v, end, offsets, h, w, eps, ptr, pixel, segment, alpha, pixel_order):
    for k in prange(bounds.size - 1):
        _max_fill(bounds[k], bounds[k + 1], u, v, end, offsets, h, w, eps, ptr, pixel, segment, alpha, pixel_order)


@njit(parallel=True, cache=True)
def _forward_last_parallel(bounds, pixel, alpha, ptr, offsets, a, out, zero, old_pixel, old_ptr, old_offsets):
    for k in prange(bounds.size - 1):
        _forward_last(bounds[k], bounds[k + 1], pixel, alpha, ptr, offsets, a, out, zero, old_pixel, old_ptr,
                      old_offsets)


@njit(parallel=True, cache=True)
def _forward_max_parallel(bounds, pixel, segment, alpha, pixel_order, ptr, offsets, a, out, wins, zero, old_pixel,
                          old_ptr, old_offsets):
    for k in prange(bounds.size - 1):
        _forward_max(bounds[k], bounds[k + 1], pixel, segment, alpha, pixel_order, ptr, offsets, a, out, wins, zero,
                     old_pixel, old_ptr, old_offsets)


@njit(parallel=True, cache=True)
def _backward_parallel(bounds, row, alpha, offsets, ptr, grad, out):
    for k in prange(bounds.size - 1):
        _backward(bounds[k], bounds[k + 1], row, alpha, offsets, ptr, grad, out)


# Below these sizes one thread is faster than waking others (tests lower them to exercise the drivers).
PARALLEL_MIN_POINTS = 20_000  # geometry
PARALLEL_MIN_ENTRIES = 1 << 16  # render forward: entries x channels
# The backward reads the image gradient at scattered pixels: with that gradient in cache 2 threads were no faster than
# one at 48 x 224^2 (0.75-0.79 ms forward+backward either way), but with it evicted (as in training, where the CNN's
# activations pass through the cache between the render and its backward) they wait on memory side by side: C=1
# forward+backward 1.0-1.8 ms on one thread, 0.7-0.9 ms on two (`r2cnn bench raster`, "C=1, turns with C=8").
PARALLEL_MIN_BACKWARD = 1 << 16  # render backward: entries x channels


def _run(serial, parallel, n: int, big: bool, *args) -> None:
    """``serial(0, n, *args)``, or ``parallel`` over numba's threads for ``big`` jobs in the main process."""
    threads = min(n, get_num_threads())
    if not big or threads < 2 or multiprocessing.parent_process() is not None:
        serial(0, n, *args)
    else:
        parallel(np.linspace(0, n, threads + 1).astype(np.int64), *args)


def geometry(points: torch.Tensor, offsets: torch.Tensor, size, eps: float, overlap: str) -> Geometry:
    """See :func:`r2cnn.raster.geometry`; inputs already checked, CPU tensors."""
    h, w = size
    p, b = points.shape[0], offsets.numel() - 1
    u, v, end = (t.numpy() for t in segment_ends(points, offsets, size))
    offs = offsets.to(torch.int64).numpy()
    big = p >= PARALLEL_MIN_POINTS
    pixel_type = np.int32 if index_dtype(b * h * w) == torch.int32 else np.int64
    segment_type = np.int32 if index_dtype(p) == torch.int32 else np.int64
    counts = np.zeros(p, np.int64)
    ptr = np.zeros(p + 1, np.int64)
    if overlap == "last":
        # written at b*H*W first (only the touched pages of these buffers are ever mapped), then compacted
        spread = (np.empty(b * h * w, pixel_type), np.empty(b * h * w, segment_type), np.empty(b * h * w, np.float32))
        _run(_last_entries, _last_entries_parallel, b, big, u, v, end, offs, h, w, eps, counts, *spread)
        np.cumsum(counts, out=ptr[1:])
        e = int(ptr[-1])
        pixel, segment, alpha = np.empty(e, pixel_type), np.empty(e, segment_type), np.empty(e, np.float32)
        _run(_compact, _compact_parallel, b, big, offs, ptr, h, w, *spread, pixel, segment, alpha)
        order = None
    else:
        _run(_max_count, _max_count_parallel, b, big, u, v, end, offs, h, w, eps, counts)
        np.cumsum(counts, out=ptr[1:])
        e = int(ptr[-1])
        pixel, segment, alpha = np.empty(e, pixel_type), np.empty(e, segment_type), np.empty(e, np.float32)
        pixel_order = np.empty(e, np.int64)
        _run(_max_fill, _max_fill_parallel, b, big, u, v, end, offs, h, w, eps, ptr, pixel, segment, alpha,
             pixel_order)
        order = torch.from_numpy(pixel_order).to(index_dtype(e))
    return Geometry((h, w), eps, overlap, offsets.to(torch.int64), torch.from_numpy(pixel), torch.from_numpy(segment),
                    torch.from_numpy(alpha), torch.from_numpy(ptr), order)


# --- output reuse -------------------------------------------------------------------------------------------------
# A rendered image is mostly zeros, and zeroing it is most of the forward's memory traffic when a sketch's image is
# too big to be zeroed in the cache (:data:`HOT_IMAGE_BYTES`; 48 x 224 x 224 x 8 channels float32 is 77 MB, of which
# ~4% are stroke pixels): on this 2-core machine the C=8 forward took 1.9 ms zeroing and 0.5 ms reusing. So the last
# image of each such shape is kept here with the geometry it was drawn with; when the caller has dropped
# every reference to it (the storage's use count says so: in training, by the next step), the next render of that
# shape clears only those pixels and writes its own. An image that is still referenced, or was changed in place (its
# version counter moved), is left alone and a fresh one is zeroed. Writes through a NumPy view of the image are
# invisible to both checks: do not write into a rendered image through NumPy.
POOL_SHAPES = 4  # shapes kept (training uses one or two: the batch, the last smaller batch)
POOL_MAX_BYTES = 256 << 20  # bigger images are never kept
_pool: OrderedDict = OrderedDict()  # (B, H, W, C, dtype) -> (image, the geometry it was drawn with, its version)
_pool_lock = threading.Lock()


def _storage_uses(t: torch.Tensor) -> int:
    """References to ``t``'s storage (tensors, views, NumPy arrays), not counting the one this call makes."""
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata) - 1


def _take(key) -> tuple[torch.Tensor | None, Geometry | None]:
    """A kept image of shape ``key`` that nothing else references, and the geometry it was drawn with; else
    ``(None, None)``."""
    with _pool_lock:
        kept = _pool.get(key)
        if kept is None:
            return None, None
        image, geo, version = kept
        if _storage_uses(image) != 1 or image._version != version:
            return None, None
        del _pool[key]
        return image, geo


def _keep(key, image: torch.Tensor, geo: Geometry) -> None:
    if image.numel() * image.element_size() > POOL_MAX_BYTES:
        return
    with _pool_lock:
        _pool[key] = (image, geo, image._version)
        _pool.move_to_end(key)
        while len(_pool) > POOL_SHAPES:
            _pool.popitem(last=False)


def clear_pool() -> None:
    """Drop the kept images (their memory goes back to the allocator)."""
    with _pool_lock:
        _pool.clear()


def forward(geo: Geometry, intensities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    h, w = geo.size
    a = intensities.detach().contiguous()
    c = a.shape[1]
    key = (geo.batch_size, h, w, c, a.dtype)
    # a sketch's image that fits the cache is zeroed there faster than scattered pixels are cleared (C=1 at 224^2:
    # 0.40 against 0.47 ms for 48 sketches); bigger ones (C=8 at 224^2: 1.6 MB) are reused
    reuse = _USE_COUNT and h * w * c * a.element_size() > HOT_IMAGE_BYTES
    out, old = _take(key) if reuse else (None, None)
    zero = out is None
    if zero:
        out = torch.empty(geo.batch_size * h * w, c, dtype=a.dtype)
        old = geo  # not read
    if geo.batch_size == 0:
        return out, None if geo.overlap == "last" else torch.zeros(0, c, dtype=torch.bool)
    big = geo.num_entries * c >= PARALLEL_MIN_ENTRIES
    previous = (old.pixel.numpy(), old.segment_ptr.numpy(), old.offsets.numpy())
    if geo.overlap == "last":
        _run(_forward_last, _forward_last_parallel, geo.batch_size, big, geo.pixel.numpy(), geo.alpha.numpy(),
             geo.segment_ptr.numpy(), geo.offsets.numpy(), a.numpy(), out.numpy(), zero, *previous)
        wins = None
    else:
        wins = torch.zeros(geo.num_entries, c, dtype=torch.bool)
        _run(_forward_max, _forward_max_parallel, geo.batch_size, big, geo.pixel.numpy(), geo.segment.numpy(),
             geo.alpha.numpy(), geo.pixel_order.numpy(), geo.segment_ptr.numpy(), geo.offsets.numpy(), a.numpy(),
             out.numpy(), wins.numpy(), zero, *previous)
    if reuse:
        _keep(key, out, geo)
    return out, wins


# torch's storage use count (a private function): without it nothing is reused.
_USE_COUNT = hasattr(torch._C, "_storage_Use_Count")


def backward(geo: Geometry, grad: torch.Tensor, wins: torch.Tensor | None) -> torch.Tensor:
    out = torch.empty(geo.num_points, grad.shape[1], dtype=grad.dtype)
    if wins is None:  # "last": entry e reads the image gradient at its pixel
        row, grad = geo.pixel, grad
    else:  # "max": entry e reads its own row of the gradient gathered per entry, 0 where it lost
        row = torch.arange(geo.num_entries, dtype=geo.pixel.dtype)
        grad = torch.where(wins, grad[geo.pixel.long()], 0)
    _run(_backward, _backward_parallel, geo.batch_size, geo.num_entries * grad.shape[1] >= PARALLEL_MIN_BACKWARD,
         row.numpy(), geo.alpha.numpy(), geo.offsets.numpy(), geo.segment_ptr.numpy(), grad.numpy(), out.numpy())
    return out
