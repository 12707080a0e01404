"""The raster contract shared by every backend: pixel convention, input checks, segment list, :class:`Geometry`.

Pixel convention (docs/architecture.md "Neural Line Rasterisation"): an image of ``H x W`` covers [-1, 1]^2 (y down);
``u = (x + 1) / 2 * W``, ``v = (y + 1) / 2 * H`` in pixel units, and pixel (row ``r``, column ``j``) has its
centre at ``(j + 0.5, r + 0.5)``.

The coverage test every backend evaluates, in float64 and in exactly this order of operations (so all backends
select the same pixels, including ties at distance exactly ``eps``)::

    dx = bx - ax;  dy = by - ay;  l2 = dx * dx + dy * dy
    t  = ((px - ax) * dx + (py - ay) * dy) / l2  if l2 > 0 else 0;  t = min(max(t, 0), 1)
    ex = (px - ax) - t * dx;  ey = (py - ay) - t * dy
    covered  <=>  ex * ex + ey * ey <= eps * eps           alpha = float32(t)   (paper eq. 1)

where ``(ax, ay)``, ``(bx, by)`` are the segment's end points and ``(px, py)`` the pixel centre, all in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from r2cnn.errors import R2CNNError

OVERLAPS = ("last", "max")
# Fast backends enumerate candidate pixels row by row from the segment's extent; this slack (pixels) keeps the
# candidate set a strict superset of the covered pixels despite rounding, and the exact test above decides.
CANDIDATE_SLACK = 0.01


def normalize_size(size) -> tuple[int, int]:
    """``size`` as ``(H, W)`` from an int or a pair; raises :class:`R2CNNError` for non-positive sizes."""
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if int(h) != h or int(w) != w or h <= 0 or w <= 0:
        raise R2CNNError(f"raster size must be a positive int or (H, W) pair of them, got {size!r}")
    return int(h), int(w)


def to_pixel(xy, size):
    """Map normalised coordinates to pixel units: ``u = (x + 1) / 2 * W``, ``v = (y + 1) / 2 * H``.

    ``xy``: tensor or array ``(..., 2)`` (extra trailing columns such as pen_end are dropped); ``size``: int or
    ``(H, W)``. Returns the same type, ``(..., 2)``. Pixel ``(r, j)`` has its centre at ``(j + 0.5, r + 0.5)``.
    """
    h, w = normalize_size(size)
    x, y = xy[..., 0], xy[..., 1]
    u, v = (x + 1) / 2 * w, (y + 1) / 2 * h
    if isinstance(xy, torch.Tensor):
        return torch.stack([u, v], dim=-1)
    import numpy as np
    return np.stack([u, v], axis=-1)


def check_inputs(points: torch.Tensor, offsets: torch.Tensor, eps: float, overlap: str) -> None:
    """Raise :class:`R2CNNError` with a one-line reason for malformed rasteriser input."""
    if points.dim() != 2 or points.shape[1] != 3:
        raise R2CNNError(f"raster: points must be (P, 3) = x, y, pen_end, got shape {tuple(points.shape)}")
    if offsets.dim() != 1 or offsets.numel() < 1 or offsets.dtype.is_floating_point:
        raise R2CNNError(f"raster: offsets must be an integer (B+1,) tensor, got {offsets.dtype} {tuple(offsets.shape)}")
    if overlap not in OVERLAPS:
        raise R2CNNError(f"raster: overlap must be one of {OVERLAPS}, got {overlap!r}")
    if not (eps > 0 and eps < float("inf")):
        raise R2CNNError(f"raster: eps must be a positive number of pixels, got {eps!r}")
    p = points.shape[0]
    bad_offsets = (offsets[0] != 0) | (offsets[-1] != p) | (offsets[1:] < offsets[:-1]).any()
    finite = torch.isfinite(points).all()
    if bool(bad_offsets):  # one host sync per check, also on CUDA (cheap next to the work itself)
        raise R2CNNError(f"raster: offsets must rise from 0 to P={p}, got {offsets.tolist()[:8]}...")
    if not bool(finite):
        k = int(torch.nonzero(~torch.isfinite(points).all(1))[0])
        b = int(torch.searchsorted(offsets.to(torch.int64), torch.tensor([k], device=offsets.device),
                                   right=True)[0]) - 1
        raise R2CNNError(f"raster: point {k} (sketch {b} of the batch) has a NaN or infinite coordinate: "
                         f"{points[k].tolist()}")


def segment_ends(points: torch.Tensor, offsets: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The drawable primitives of a packed batch, in drawing order.

    Returns ``u, v`` float64 ``(P,)`` (pixel coordinates, :func:`to_pixel`) and ``end`` int64 ``(P,)``: for point
    ``i``, ``end[i] = i + 1`` when a segment joins ``p_i`` to ``p_{i+1}`` (``p_i`` is not the last point of its stroke),
    ``end[i] = i`` when ``p_i`` is a one-point stroke (a dot), ``-1`` when ``p_i`` only ends a stroke. A stroke ends
    where ``pen_end > 0.5`` and at the last point of each sketch, so segments never join two sketches.
    """
    h, w = normalize_size(size)
    p = points.shape[0]
    dev = points.device
    u = (points[:, 0].double() + 1) / 2 * w
    v = (points[:, 1].double() + 1) / 2 * h
    boundary = torch.zeros(p + 1, dtype=torch.bool, device=dev)  # boundary[i]: point i starts a sketch
    boundary[offsets.to(torch.int64)] = True
    pen = points[:, 2] > 0.5
    ends_stroke = pen | boundary[1:]
    starts_stroke = boundary[:-1].clone()
    starts_stroke[1:] |= pen[:-1]
    idx = torch.arange(p, device=dev, dtype=torch.int64)
    end = torch.where(ends_stroke, torch.where(starts_stroke, idx, -1), idx + 1)
    return u, v, end


def index_dtype(n: int) -> torch.dtype:
    """int32 when every index in ``[0, n)`` fits (halves geometry size), else int64."""
    return torch.int32 if n < 2**31 - 1 else torch.int64


@dataclass
class Geometry:
    """Which segment covers each pixel and where (paper Sec. 3.3: "segment index and alpha_k at each pixel").

    Sparse, a few flat tensors (cheap to pickle and to send between processes); independent of intensities.
    Entry ``e`` says: pixel ``pixel[e]`` (flat over ``B*H*W``, i.e. ``b*H*W + r*W + j``) takes eq. (1) with
    ``a_i = intensities[segment[e]]``, ``a_{i+1} = intensities[segment[e] + 1]`` and ``alpha[e]`` (a dot, a
    one-point stroke, has alpha 0, so only its own point counts).

    - ``overlap="last"``: one entry per stroke pixel, owned by the latest segment in drawing order.
    - ``overlap="max"``: every (pixel, segment) pair within ``eps``; ``pixel_order`` ``(E,)`` lists the entries
      sorted by (pixel, segment), so the candidates of one pixel are consecutive.

    Entries are sorted by (segment, pixel), so every backend returns the same tensors; ``segment_ptr`` ``(P+1,)``
    int64 is the CSR over points: entries of the segment starting at point ``i`` are
    ``[segment_ptr[i], segment_ptr[i+1])`` (sketch b's entries: ``[segment_ptr[offsets[b]], segment_ptr[offsets[b+1]])``).
    It makes the backward pass (eq. 3) a fixed-order sum per point, hence deterministic on any number of threads.
    Size: 12 bytes per entry (16 for "max"), 8 per point; about 1 MB for 48 QuickDraw sketches at 224x224.
    """

    size: tuple[int, int]
    eps: float
    overlap: str
    offsets: torch.Tensor  # (B+1,) int64, sketch offsets into the points
    pixel: torch.Tensor  # (E,) int32/int64
    segment: torch.Tensor  # (E,) int32/int64
    alpha: torch.Tensor  # (E,) float32
    segment_ptr: torch.Tensor  # (P+1,) int64
    pixel_order: torch.Tensor | None = None  # (E,) int32/int64, "max" only

    @property
    def batch_size(self) -> int:
        return self.offsets.numel() - 1

    @property
    def num_points(self) -> int:
        return self.segment_ptr.numel() - 1

    @property
    def num_entries(self) -> int:
        return self.pixel.numel()

    @property
    def device(self) -> torch.device:
        return self.pixel.device

    def _tensors(self) -> dict:
        return {k: getattr(self, k) for k in ("offsets", "pixel", "segment", "alpha", "segment_ptr", "pixel_order")}

    def _map(self, fn) -> "Geometry":
        moved = {k: (fn(t) if t is not None else None) for k, t in self._tensors().items()}
        return Geometry(self.size, self.eps, self.overlap, **moved)

    def to(self, device, non_blocking: bool = False) -> "Geometry":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Geometry":
        return self._map(lambda t: t.pin_memory())

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors().values() if t is not None)
