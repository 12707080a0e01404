"""Inference NLR of plain tensor ops, for export (ONNX opset 17+, TorchScript): one sketch in, its image out.

The paper's definition (Sec. 3.3) is dense: pixel k is a stroke pixel of segment (p_i, p_i+1) when the distance from
its centre to the segment is <= eps. This module evaluates that for all pixel centres against all segments of one
sketch, with the coverage test of :mod:`r2cnn.raster.geometry` written operation by operation in float64, eq. (1)
in the intensities' dtype, and the same overlap rules (``"last"``: the latest covering segment in drawing order;
``"max"``: the largest value per channel). It therefore returns exactly the pixels of :func:`r2cnn.raster.rasterize`
(tested on every pixel in ``tests/test_raster_dense.py``), without a custom kernel or autograd Function, so a traced
or scripted model keeps it. It is for inference: no gradients are meant to flow (positions carry none anyway).

Memory: each float64 intermediate of the coverage test is a (segments x pixels) block. The segments are processed
in chunks of ``max(1, CHUNK_ELEMENTS // (H*W))`` in drawing order, carrying the per-pixel winner from chunk to
chunk, and each chunk is tested only against the pixels of its bounding box grown by ``eps + 1`` (:func:`_window`),
so the working set does not grow with the number of points: at 224x224 a chunk is 10 segments and at most the
whole canvas (0.5M elements, 4 MB per float64 block). A sketch of any length stays within :data:`MEMORY_BOUND_MB`
at C = 1: 2,000 points at 224x224 raised a fresh process's peak resident memory by 72 MB ("last" and "max") when
every segment jumps across the canvas (each chunk's box is the whole canvas: the worst case), and by 3 MB for a
2,000-point random walk, which is what drawn strokes look like (test in ``tests/test_raster_dense.py``; "max" keeps
a float32 ``(S, K, C)`` block per chunk, so it grows with C). Time grows with segments x box pixels: this is an
export path, not a training one.

The functions are TorchScript-compatible (``torch.jit.script``); the chunk loop becomes an ONNX ``Loop`` when a
scripted :class:`DenseRasterizer` is exported with ``torch.onnx.export(..., dynamo=False)``.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

# (segments x pixels) elements per chunk: 0.5M elements, 4 MB per float64 intermediate (chunk_segments).
CHUNK_ELEMENTS = 1 << 19
# Peak extra memory of one call at 224x224, C = 1, whatever the sketch's length (worst case measured: 72 MB).
MEMORY_BOUND_MB = 100


def chunk_segments(height: int, width: int) -> int:
    """Segments per chunk on an ``H x W`` canvas: ``max(1, CHUNK_ELEMENTS // (H*W))`` (a literal, which
    TorchScript can read where it cannot read a module global)."""
    return max(1, 524288 // (height * width))


def segment_table(points: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sketch's primitives as :func:`r2cnn.raster.geometry.segment_ends` gives them for a packed batch.

    ``points`` ``(N, 3)`` normalised x, y, pen_end. Returns ``u, v`` float64 ``(N,)`` in pixels and ``end`` int64
    ``(N,)``: ``i + 1`` when a segment joins p_i to p_i+1, ``i`` for a one-point stroke (a dot), ``-1`` when p_i
    only ends a stroke. A stroke ends where pen_end > 0.5 and at the sketch's last point.
    """
    n = points.shape[0]
    u = (points[:, 0].double() + 1) / 2 * width
    v = (points[:, 1].double() + 1) / 2 * height
    idx = torch.arange(n, dtype=torch.int64, device=points.device)
    pen = points[:, 2] > 0.5
    ends_stroke = pen | (idx == n - 1)
    starts_stroke = torch.cat([torch.ones(1, dtype=torch.bool, device=points.device), pen])[:n]
    end = torch.where(ends_stroke, torch.where(starts_stroke, idx, -torch.ones_like(idx)), idx + 1)
    return u, v, end


def _coverage(ax: torch.Tensor, ay: torch.Tensor, bx: torch.Tensor, by: torch.Tensor, drawn: torch.Tensor,
              px: torch.Tensor, py: torch.Tensor, eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """The coverage test of :mod:`r2cnn.raster.geometry` for segments ``(S,)`` from ``(ax, ay)`` to ``(bx, by)``
    (``drawn`` False: not a segment) against pixel centres ``(K,)`` -> ``covered`` bool ``(S, K)`` and ``t``
    float64 ``(S, K)`` (the clamped projection parameter)."""
    ax, ay = ax[:, None], ay[:, None]
    dx, dy = bx[:, None] - ax, by[:, None] - ay
    l2 = dx * dx + dy * dy
    rx, ry = px[None, :] - ax, py[None, :] - ay
    t = (rx * dx + ry * dy) / l2
    t = torch.where(l2 > 0, t, torch.zeros_like(t)).clamp(0, 1)  # a dot: t = 0 (the division gave nan there)
    ex, ey = rx - t * dx, ry - t * dy
    covered = (ex * ex + ey * ey <= eps * eps) & drawn[:, None]
    return covered, t


def _window(ax: torch.Tensor, ay: torch.Tensor, bx: torch.Tensor, by: torch.Tensor, drawn: torch.Tensor, eps: float,
            height: int, width: int) -> torch.Tensor:
    """Flat indices ``(K',)`` of the pixels in the bounding box of segments ``(S,)`` grown by ``eps + 1`` and
    clipped to the canvas (never empty): no pixel outside it is within ``eps`` of them (the reference backend's
    box). Consecutive segments of a sketch lie close together, so this is most often a small part of the canvas."""
    bx, by = torch.where(drawn, bx, ax), torch.where(drawn, by, ay)  # a point that only ends a stroke: itself
    x0 = int(torch.floor(torch.minimum(ax.min(), bx.min()) - eps - 1).clamp(0, width - 1))
    x1 = int(torch.ceil(torch.maximum(ax.max(), bx.max()) + eps).clamp(0, width - 1))
    y0 = int(torch.floor(torch.minimum(ay.min(), by.min()) - eps - 1).clamp(0, height - 1))
    y1 = int(torch.ceil(torch.maximum(ay.max(), by.max()) + eps).clamp(0, height - 1))
    rows = torch.arange(y0, y1 + 1, device=ax.device)
    cols = torch.arange(x0, x1 + 1, device=ax.device)
    return (rows[:, None] * width + cols[None, :]).reshape(-1).long()  # the ONNX exporter's Range gave floats


def rasterize_dense(points: torch.Tensor, intensities: torch.Tensor, height: int, width: int, eps: float = 1.0,
                    overlap: str = "last", chunk: int = 0) -> torch.Tensor:
    """One sketch's image ``(C, H, W)``: ``points`` ``(N, 3)`` (normalised, y down), ``intensities`` ``(N, C)``.

    Equal on every pixel to ``rasterize(points, [0, N], intensities, (H, W), eps, overlap)[0]`` (float32 or
    float64 intensities). ``eps`` in pixels; ``overlap`` "last" or "max"; ``chunk`` segments per chunk (0:
    :func:`chunk_segments`; the result does not depend on it).
    """
    n, c = points.shape[0], intensities.shape[1]
    u, v, end = segment_table(points, height, width)
    bu, bv, drawn = u[end.clamp(min=0)], v[end.clamp(min=0)], end >= 0  # segment i ends at (bu[i], bv[i])
    dev = points.device
    px = (torch.arange(width, dtype=torch.float64, device=dev) + 0.5).repeat(height)
    py = (torch.arange(height, dtype=torch.float64, device=dev) + 0.5).repeat_interleave(width)
    k = height * width
    step = chunk if chunk > 0 else chunk_segments(height, width)
    nxt = (torch.arange(n, device=dev) + 1).clamp(max=n - 1)  # a dot on the last point has no successor (alpha 0)
    if overlap == "last":
        owner = torch.full([k], -1, dtype=torch.int64, device=dev)
        alpha = torch.zeros([k], dtype=torch.float32, device=dev)  # float32(t), as the geometry stores it (eq. 1)
        for s0 in range(0, n, step):
            s1 = min(s0 + step, n)
            near = _window(u[s0:s1], v[s0:s1], bu[s0:s1], bv[s0:s1], drawn[s0:s1], eps, height, width)
            covered, t = _coverage(u[s0:s1], v[s0:s1], bu[s0:s1], bv[s0:s1], drawn[s0:s1], px[near], py[near], eps)
            seg = torch.arange(s0, s1, device=dev)[:, None]
            latest = torch.where(covered, seg, -torch.ones_like(seg)).max(0)[0]  # latest covering segment
            row = (latest - s0).clamp(min=0)[None, :]
            owner = owner.scatter(0, near, torch.where(latest >= 0, latest, owner[near]))
            alpha = alpha.scatter(0, near, torch.where(latest >= 0, t.gather(0, row)[0].float(), alpha[near]))
        # a zero row n stands for "no segment", so that an empty sketch needs no branch
        padded = torch.cat([intensities, torch.zeros([1, c], dtype=intensities.dtype, device=dev)])
        nxt = torch.cat([nxt, torch.full([1], n, dtype=nxt.dtype, device=dev)])
        seg = torch.where(owner >= 0, owner, torch.full_like(owner, n))
        al = alpha.to(intensities.dtype)[:, None]
        value = (1 - al) * padded[seg] + al * padded[nxt[seg]]
        image = torch.where((owner >= 0)[:, None], value, torch.zeros_like(value))
    else:
        best = torch.full([k, c], float("-inf"), dtype=intensities.dtype, device=dev)
        hit = torch.zeros([k], dtype=torch.bool, device=dev)
        for s0 in range(0, n, step):
            s1 = min(s0 + step, n)
            near = _window(u[s0:s1], v[s0:s1], bu[s0:s1], bv[s0:s1], drawn[s0:s1], eps, height, width)
            covered, t = _coverage(u[s0:s1], v[s0:s1], bu[s0:s1], bv[s0:s1], drawn[s0:s1], px[near], py[near], eps)
            al = t.float().to(intensities.dtype)[:, :, None]  # (S, K', 1)
            value = (1 - al) * intensities[s0:s1][:, None, :] + al * intensities[nxt[s0:s1]][:, None, :]
            value = torch.where(covered[:, :, None], value, torch.full_like(value, float("-inf")))
            best = best.scatter(0, near[:, None].expand(-1, c), torch.maximum(best[near], value.max(0)[0]))
            hit = hit.scatter(0, near, hit[near] | covered.any(0))
        image = torch.where(hit[:, None], best, torch.zeros_like(best))
    return image.t().reshape(c, height, width)


class DenseRasterizer(nn.Module):
    """:func:`rasterize_dense` for a fixed canvas, stroke width and overlap rule, as a module to script or export:
    ``forward(points (N, 3), intensities (N, C)) -> (1, C, H, W)``."""

    def __init__(self, size: int, eps: float = 1.0, overlap: str = "last"):
        super().__init__()
        self.size = int(size)
        self.eps = float(eps)
        self.overlap = overlap

    def forward(self, points: torch.Tensor, intensities: torch.Tensor) -> torch.Tensor:
        return rasterize_dense(points, intensities, self.size, self.size, self.eps, self.overlap)[None]
