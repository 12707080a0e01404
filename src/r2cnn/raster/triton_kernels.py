"""GPU backend: Triton kernels on CUDA tensors, no copy to the host (one scalar read sizes the geometry).

Geometry: one program per segment walks the rows near it (as the CPU backend does) in blocks of columns and
applies the exact float64 coverage test of :mod:`r2cnn.raster.geometry`, compiled without FMA contraction
(``enable_fp_fusion=False``) so the same pixels come out as on the CPU. For "last", a first pass leaves in a
per-pixel owner map (``B*H*W`` int32; never per segment) the latest covering segment, by ``atomic_max``, whose
result does not depend on the order. A count pass and a prefix sum then give each segment its slice of the output
and a write pass fills it, so entries come out in (segment, pixel) order, as on the CPU.

Render: forward "last" is one store per entry and channel (entries own distinct pixels: no atomics); "max" uses
the reference's order-independent ``scatter_reduce`` amax. Backward (eq. 3) is one program per point summing its
two entry ranges of the CSR ``segment_ptr`` in a fixed order: deterministic, no atomics.

Runs on CPU tensors under ``TRITON_INTERPRET=1`` (slow; for tests on small inputs).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from r2cnn.raster import reference
from r2cnn.raster.geometry import CANDIDATE_SLACK, Geometry, index_dtype, segment_ends

_MARK, _COUNT, _WRITE = 0, 1, 2
_COLUMNS = 32  # pixels of one row tested together
_ENTRIES = 256  # entries per program in render forward
_POINT_BLOCK = 32  # entries summed together per point in backward


@triton.jit
def _visit_kernel(u_ptr, v_ptr, end_ptr, base_ptr, owner_ptr, start_ptr, count_ptr, pixel_ptr, segment_ptr,
                  alpha_ptr, h, w, params_ptr, MODE: tl.constexpr, LAST: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0)
    n = tl.load(end_ptr + i)
    if n >= 0:
        ax = tl.load(u_ptr + i)
        ay = tl.load(v_ptr + i)
        bx = tl.load(u_ptr + n)
        by = tl.load(v_ptr + n)
        base = tl.load(base_ptr + i)
        dx = bx - ax
        dy = by - ay
        l2 = dx * dx + dy * dy
        eps2 = tl.load(params_ptr)  # float64 eps * eps, as the other backends compute it
        reach = tl.load(params_ptr + 1)
        r0 = tl.maximum(tl.floor(tl.minimum(ay, by) - reach - 0.5), 0.0).to(tl.int32)
        r1 = tl.minimum(tl.ceil(tl.maximum(ay, by) + reach - 0.5), h - 1.0).to(tl.int32)
        k = tl.load(start_ptr + i)  # write cursor (WRITE) / entries so far (COUNT)
        k0 = k
        for r in range(r0, r1 + 1):
            py = tl.cast(r, tl.float64) + 0.5
            # columns within reach of the part of the segment within reach of this row
            flat = dy == 0.0
            safe_dy = tl.where(flat, 1.0, dy)
            t1 = (py - reach - ay) / safe_dy
            t2 = (py + reach - ay) / safe_dy
            tlo = tl.maximum(0.0, tl.minimum(t1, t2))
            thi = tl.minimum(1.0, tl.maximum(t1, t2))
            x1 = ax + tlo * dx
            x2 = ax + thi * dx
            xlo = tl.where(flat, tl.minimum(ax, bx), tl.minimum(x1, x2))
            xhi = tl.where(flat, tl.maximum(ax, bx), tl.maximum(x1, x2))
            row_ok = tl.where(flat, tl.abs(py - ay) <= reach, tlo <= thi)
            j0 = tl.maximum(tl.floor(xlo - reach - 0.5), 0.0).to(tl.int32)
            j1 = tl.minimum(tl.ceil(xhi + reach - 0.5), w - 1.0).to(tl.int32)
            j1 = tl.where(row_ok, j1, j0 - 1)
            for jb in range(j0, j1 + 1, BLOCK):
                j = jb + tl.arange(0, BLOCK)
                px = j.to(tl.float64) + 0.5
                t = ((px - ax) * dx + (py - ay) * dy) / tl.where(l2 > 0.0, l2, 1.0)
                t = tl.where(l2 > 0.0, t, 0.0)
                t = tl.minimum(tl.maximum(t, 0.0), 1.0)
                ex = (px - ax) - t * dx
                ey = (py - ay) - t * dy
                covered = (ex * ex + ey * ey <= eps2) & (j <= j1)
                q = base + r * w + j
                if MODE == 0:
                    tl.atomic_max(owner_ptr + q, i + tl.zeros([BLOCK], tl.int32), mask=covered)
                else:
                    if LAST:
                        covered = covered & (tl.load(owner_ptr + q, mask=covered, other=-1) == i)
                    if MODE == 2:
                        pos = k + tl.cumsum(covered.to(tl.int64), 0) - 1
                        tl.store(pixel_ptr + pos, q.to(pixel_ptr.dtype.element_ty), mask=covered)
                        tl.store(segment_ptr + pos, i.to(segment_ptr.dtype.element_ty), mask=covered)
                        tl.store(alpha_ptr + pos, t.to(tl.float32), mask=covered)
                    k += tl.sum(covered.to(tl.int64), 0)
        if MODE == 1:
            tl.store(count_ptr + i, k - k0)


@triton.jit
def _forward_last_kernel(pixel_ptr, segment_ptr, alpha_ptr, a_ptr, out_ptr, num_entries, num_points,
                         C: tl.constexpr, CP: tl.constexpr, BLOCK: tl.constexpr):
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = e < num_entries
    p = tl.load(pixel_ptr + e, mask=valid, other=0).to(tl.int64)
    s = tl.load(segment_ptr + e, mask=valid, other=0).to(tl.int64)
    n = tl.minimum(s + 1, num_points - 1)  # a dot on the very last point has no successor (its alpha is 0)
    al = tl.load(alpha_ptr + e, mask=valid, other=0.0).to(a_ptr.dtype.element_ty)[:, None]
    c = tl.arange(0, CP)[None, :]
    m = valid[:, None] & (c < C)
    ai = tl.load(a_ptr + s[:, None] * C + c, mask=m, other=0.0)
    an = tl.load(a_ptr + n[:, None] * C + c, mask=m, other=0.0)
    tl.store(out_ptr + p[:, None] * C + c, (1 - al) * ai + al * an, mask=m)


@triton.jit
def _backward_kernel(pixel_ptr, alpha_ptr, ptr_ptr, grad_ptr, wins_ptr, out_ptr, C: tl.constexpr, CP: tl.constexpr,
                     MASKED: tl.constexpr, BLOCK: tl.constexpr):
    """Point i: entries [ptr[i-1], ptr[i]) end at it (weight alpha), [ptr[i], ptr[i+1]) start at it (1 - alpha)."""
    i = tl.program_id(0)
    mid = tl.load(ptr_ptr + i)
    hi = tl.load(ptr_ptr + i + 1)
    lo = tl.where(i > 0, tl.load(ptr_ptr + tl.maximum(i - 1, 0)), mid)
    c = tl.arange(0, CP)[None, :]
    acc = tl.zeros((BLOCK, CP), dtype=grad_ptr.dtype.element_ty)
    for eb in range(lo, hi, BLOCK):
        e = eb + tl.arange(0, BLOCK)
        valid = e < hi
        p = tl.load(pixel_ptr + e, mask=valid, other=0).to(tl.int64)
        al = tl.load(alpha_ptr + e, mask=valid, other=0.0).to(grad_ptr.dtype.element_ty)
        weight = tl.where(e < mid, al, 1 - al)[:, None]
        m = valid[:, None] & (c < C)
        g = tl.load(grad_ptr + p[:, None] * C + c, mask=m, other=0.0)
        if MASKED:
            g = tl.where(tl.load(wins_ptr + e[:, None] * C + c, mask=m, other=0) != 0, g, 0.0)
        acc += g * weight
    tl.store(out_ptr + i * C + tl.arange(0, CP), tl.sum(acc, 0), mask=tl.arange(0, CP) < C)


def _launch(kernel, grid, *args, **meta):
    # no FMA contraction: the coverage test must round exactly like the other backends
    kernel[grid](*args, **meta, enable_fp_fusion=False)


def geometry(points: torch.Tensor, offsets: torch.Tensor, size, eps: float, overlap: str) -> Geometry:
    """See :func:`r2cnn.raster.geometry`; inputs already checked."""
    h, w = size
    dev = points.device
    p, b = points.shape[0], offsets.numel() - 1
    offsets = offsets.to(torch.int64)
    u, v, end = segment_ends(points, offsets, size)
    base = torch.repeat_interleave(torch.arange(b, device=dev) * (h * w), offsets[1:] - offsets[:-1], output_size=p)
    last = overlap == "last"
    owner = torch.full((b * h * w if last else 1,), -1, dtype=torch.int32, device=dev)
    counts = torch.zeros(p, dtype=torch.int64, device=dev)
    pixel_type, segment_type = index_dtype(b * h * w), index_dtype(p)
    none_i = torch.zeros(1, dtype=pixel_type, device=dev)
    none_f = torch.zeros(1, dtype=torch.float32, device=dev)
    common = dict(LAST=last, BLOCK=_COLUMNS)
    params = torch.tensor([eps * eps, eps + CANDIDATE_SLACK], dtype=torch.float64, device=dev)
    ptr = torch.zeros(p + 1, dtype=torch.int64, device=dev)
    if p:
        if last:
            _launch(_visit_kernel, (p,), u, v, end, base, owner, counts, counts, none_i, none_i, none_f, h, w,
                    params, MODE=_MARK, **common)
        _launch(_visit_kernel, (p,), u, v, end, base, owner, ptr, counts, none_i, none_i, none_f, h, w, params,
                MODE=_COUNT, **common)
        torch.cumsum(counts, 0, out=ptr[1:])
    e = int(ptr[-1])  # the one host sync: the output size
    pixel = torch.empty(e, dtype=pixel_type, device=dev)
    segment = torch.empty(e, dtype=segment_type, device=dev)
    alpha = torch.empty(e, dtype=torch.float32, device=dev)
    if e:
        _launch(_visit_kernel, (p,), u, v, end, base, owner, ptr, counts, pixel, segment, alpha, h, w, params,
                MODE=_WRITE, **common)
    order = None
    if not last:  # stable: entries of one pixel stay in segment order
        order = torch.sort(pixel, stable=True).indices.to(index_dtype(e))
    return Geometry((h, w), eps, overlap, offsets, pixel, segment, alpha, ptr, order)


def forward(geo: Geometry, intensities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    if geo.overlap == "max":
        return reference.forward(geo, intensities)
    h, w = geo.size
    a = intensities.detach().contiguous()
    c = a.shape[1]
    out = torch.zeros(geo.batch_size * h * w, c, dtype=a.dtype, device=a.device)
    if geo.num_entries:
        _launch(_forward_last_kernel, (triton.cdiv(geo.num_entries, _ENTRIES),), geo.pixel, geo.segment, geo.alpha,
                a, out, geo.num_entries, geo.num_points, C=c, CP=triton.next_power_of_2(c), BLOCK=_ENTRIES)
    return out, None


def backward(geo: Geometry, grad: torch.Tensor, wins: torch.Tensor | None) -> torch.Tensor:
    c = grad.shape[1]
    out = torch.empty(geo.num_points, c, dtype=grad.dtype, device=grad.device)
    if geo.num_points:
        mask = wins.to(torch.int8).contiguous() if wins is not None else torch.zeros(1, dtype=torch.int8,
                                                                                     device=grad.device)
        _launch(_backward_kernel, (geo.num_points,), geo.pixel, geo.alpha, geo.segment_ptr, grad, mask, out, C=c,
                CP=triton.next_power_of_2(c), MASKED=wins is not None, BLOCK=_POINT_BLOCK)
    return out
