"""Reference backend: plain PyTorch, one segment at a time. Slow and obviously correct: the oracle of the tests.

Geometry tests every pixel of each segment's whole bounding box (± eps, clipped to the canvas) with the coverage
test of :mod:`r2cnn.raster.geometry`; rendering is eq. (1) as tensor ops and eq. (3) as ``index_add_``.
"""

from __future__ import annotations

import math

import torch

from r2cnn.raster.geometry import Geometry, index_dtype, normalize_size, segment_ends


def geometry(points: torch.Tensor, offsets: torch.Tensor, size, eps: float, overlap: str) -> Geometry:
    """See :func:`r2cnn.raster.geometry`; inputs already checked."""
    h, w = normalize_size(size)
    dev = points.device
    p, b = points.shape[0], offsets.numel() - 1
    u, v, end = segment_ends(points, offsets, (h, w))
    sketch_of = torch.repeat_interleave(torch.arange(b), (offsets[1:] - offsets[:-1]).cpu(), output_size=p).tolist()
    uu, vv, ee = u.tolist(), v.tolist(), end.tolist()
    owner = torch.full((b * h * w,), -1, dtype=torch.int64, device=dev)
    owner_alpha = torch.zeros(b * h * w, dtype=torch.float64, device=dev)
    found = []  # (pixel, segment, alpha) per segment, "max" only
    for i in range(p):
        if ee[i] < 0:
            continue
        ax, ay, bx, by = uu[i], vv[i], uu[ee[i]], vv[ee[i]]
        r0, r1 = max(0, math.floor(min(ay, by) - eps - 1)), min(h - 1, math.ceil(max(ay, by) + eps))
        j0, j1 = max(0, math.floor(min(ax, bx) - eps - 1)), min(w - 1, math.ceil(max(ax, bx) + eps))
        if r0 > r1 or j0 > j1:
            continue
        py = (torch.arange(r0, r1 + 1, device=dev, dtype=torch.float64) + 0.5)[:, None]
        px = (torch.arange(j0, j1 + 1, device=dev, dtype=torch.float64) + 0.5)[None, :]
        dx, dy = bx - ax, by - ay
        l2 = dx * dx + dy * dy
        t = ((px - ax) * dx + (py - ay) * dy) / l2 if l2 > 0 else torch.zeros_like(px * py)
        t = t.clamp(0, 1)
        ex, ey = (px - ax) - t * dx, (py - ay) - t * dy
        covered = ex * ex + ey * ey <= eps * eps
        rows = torch.arange(r0, r1 + 1, device=dev)[:, None]
        cols = torch.arange(j0, j1 + 1, device=dev)[None, :]
        pix = (sketch_of[i] * h * w + rows * w + cols)[covered]
        if overlap == "last":  # segments come in drawing order, so a later one overwrites
            owner[pix] = i
            owner_alpha[pix] = t[covered]
        else:
            found.append((pix, torch.full_like(pix, i), t[covered]))
    if overlap == "last":
        pix = torch.nonzero(owner >= 0)[:, 0]
        seg, alpha = owner[pix], owner_alpha[pix]
    elif found:
        pix, seg, alpha = (torch.cat(x) for x in zip(*found))
    else:
        pix = seg = torch.zeros(0, dtype=torch.int64, device=dev)
        alpha = torch.zeros(0, dtype=torch.float64, device=dev)
    order = torch.argsort(seg * (b * h * w) + pix)  # (segment, pixel) order, unique keys
    pix, seg, alpha = pix[order], seg[order], alpha[order]
    ptr = torch.zeros(p + 1, dtype=torch.int64, device=dev)
    ptr[1:] = torch.cumsum(torch.bincount(seg, minlength=p), 0)
    pixel_order = torch.argsort(pix, stable=True).to(index_dtype(pix.numel())) if overlap == "max" else None
    return Geometry((h, w), float(eps), overlap, offsets.to(torch.int64), pix.to(index_dtype(b * h * w)),
                    seg.to(index_dtype(p)), alpha.float(), ptr, pixel_order)


def _next_point(seg: torch.Tensor, num_points: int) -> torch.Tensor:
    """Index of a_{i+1}; clamped because a dot on the very last point has no successor (its alpha is 0)."""
    return (seg + 1).clamp(max=num_points - 1)


def _values(geo: Geometry, intensities: torch.Tensor) -> torch.Tensor:
    """Eq. (1) for every entry: ``(E, C)``."""
    seg = geo.segment.long()
    alpha = geo.alpha.to(intensities.dtype)[:, None]
    return (1 - alpha) * intensities[seg] + alpha * intensities[_next_point(seg, geo.num_points)]


def forward(geo: Geometry, intensities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Image ``(B*H*W, C)`` (pixel-major, i.e. channels-last) and, for "max", the ``(E, C)`` bool winner mask."""
    h, w = geo.size
    c = intensities.shape[1]
    vals = _values(geo, intensities)
    pix = geo.pixel.long()
    out = intensities.new_zeros(geo.batch_size * h * w, c)
    if geo.overlap == "last":
        out[pix] = vals
        return out, None
    index = pix[:, None].expand(-1, c)
    out.scatter_reduce_(0, index, vals, "amax", include_self=False)
    entry = torch.arange(pix.numel(), device=pix.device)[:, None].expand(-1, c)
    candidates = torch.where(vals == out[pix], entry, -1)
    winner = torch.full_like(out, -1, dtype=torch.int64).scatter_reduce_(0, index, candidates, "amax")
    return out, winner[pix] == entry  # ties: the latest entry = the latest segment


def backward(geo: Geometry, grad: torch.Tensor, wins: torch.Tensor | None) -> torch.Tensor:
    """Eq. (3): ``grad`` ``(B*H*W, C)`` -> gradient of the intensities ``(P, C)``."""
    seg = geo.segment.long()
    g = grad[geo.pixel.long()]
    if wins is not None:
        g = g * wins
    alpha = geo.alpha.to(grad.dtype)[:, None]
    out = grad.new_zeros(geo.num_points, grad.shape[1])
    out.index_add_(0, seg, g * (1 - alpha))
    out.index_add_(0, _next_point(seg, geo.num_points), g * alpha)
    return out
