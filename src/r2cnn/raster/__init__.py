"""Neural Line Rasterisation (paper Sec. 3.3, eq. 1-3): packed vector sketches -> differentiable images.

Public API::

    geometry(points, offsets, size, eps=1.0, overlap="last", backend="auto") -> Geometry
    render(geometry, intensities, backend="auto") -> images (B, C, H, W)
    rasterize(points, offsets, intensities, size, eps=1.0, overlap="last", backend="auto") -> (B, C, H, W)
    to_pixel(xy, size) -> (..., 2) pixel coordinates
    dense.rasterize_dense(points, intensities, H, W, eps, overlap) -> (C, H, W)   one sketch, plain tensor ops (export)

Shapes: ``points`` float32 ``(P, 3)`` = x, y, pen_end of all sketches concatenated, coordinates in [-1, 1]^2
(y down; points outside are allowed and simply fall off the canvas); ``offsets`` int64 ``(B+1,)``, sketch b is
``points[offsets[b]:offsets[b+1]]``; ``intensities`` ``(P, C)`` float (the attention a_i of each point).

Pixel convention: ``u = (x + 1) / 2 * W``, ``v = (y + 1) / 2 * H``; pixel (row r, column j) has its centre at
``(j + 0.5, r + 0.5)``. ``eps`` is in pixels (paper: 1.0).

Contract (docs/architecture.md "Neural Line Rasterisation"): a segment joins p_i and p_{i+1} when p_i is not the last point of its stroke
(pen_end_i == 0) and never joins two sketches; a one-point stroke is a dot. A pixel is a stroke pixel of a
segment when the distance from its centre to the segment is <= eps; its value is eq. (1),
``(1 - alpha) a_i + alpha a_{i+1}`` with alpha the clamped projection parameter. Where segments overlap,
``overlap="last"`` keeps the latest segment in drawing order, ``"max"`` the largest value per channel (its
gradient goes to the winning segment, ties to the latest). Other pixels are 0. Gradients flow to the intensities
only (eq. 3). Every backend returns the same pixels, deterministically.

Backends: ``"reference"`` (plain PyTorch, slow; the oracle), ``"cpu"`` (numba, parallel over sketches),
``"triton"`` (CUDA tensors in, CUDA tensors out); ``"auto"`` picks ``"triton"`` for CUDA tensors, else ``"cpu"``.
Images come back as ``(B, C, H, W)`` views of ``(B, H, W, C)`` memory (``torch.channels_last``), in the
intensities' dtype (float16/bfloat16 are computed in float32).
"""

from __future__ import annotations

import importlib

import torch

from r2cnn.errors import R2CNNError
from r2cnn.raster.geometry import Geometry, check_inputs, normalize_size, to_pixel
from r2cnn.raster.render import RenderFunction

__all__ = ["BACKENDS", "Geometry", "geometry", "rasterize", "render", "to_pixel"]

BACKENDS = {"reference": "r2cnn.raster.reference", "cpu": "r2cnn.raster.cpu", "triton": "r2cnn.raster.triton_kernels"}


def _backend(name: str, device: torch.device):
    if name == "auto":
        name = "triton" if device.type == "cuda" else "cpu"
    if name not in BACKENDS:
        raise R2CNNError(f"raster: unknown backend {name!r}; choose one of {['auto', *BACKENDS]}")
    if name == "triton" and device.type != "cuda" and not _triton_interpreted():
        raise R2CNNError("raster: the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 for CPU testing)")
    if name == "cpu" and device.type != "cpu":
        raise R2CNNError(f"raster: the cpu backend needs CPU tensors, got {device}")
    return importlib.import_module(BACKENDS[name])


def _triton_interpreted() -> bool:
    import os
    return os.environ.get("TRITON_INTERPRET") == "1"


def geometry(points: torch.Tensor, offsets: torch.Tensor, size, eps: float = 1.0, overlap: str = "last",
             backend: str = "auto") -> Geometry:
    """Which segment covers each pixel and its alpha (sparse :class:`Geometry`), on the points' device.

    ``points`` ``(P, 3)``, ``offsets`` ``(B+1,)``, ``size`` int or ``(H, W)``. Depends only on these, ``eps`` and
    ``overlap``, so the data loader's workers can compute it once per batch. Raises :class:`R2CNNError` on
    NaN/inf points or malformed offsets.
    """
    size = normalize_size(size)
    offsets = torch.as_tensor(offsets, device=points.device)
    check_inputs(points, offsets, eps, overlap)
    return _backend(backend, points.device).geometry(points, offsets, size, float(eps), overlap)


def render(geo: Geometry, intensities: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Images ``(B, C, H, W)`` from a :class:`Geometry` and ``intensities`` ``(P, C)`` (eq. 1), differentiable
    with respect to the intensities (eq. 3). The geometry is moved to the intensities' device when needed."""
    if intensities.dim() != 2 or intensities.shape[0] != geo.num_points:
        raise R2CNNError(f"raster: intensities must be (P={geo.num_points}, C), got {tuple(intensities.shape)}")
    if geo.device != intensities.device:
        geo = geo.to(intensities.device)
    kernels = _backend(backend, intensities.device)
    if intensities.dtype in (torch.float32, torch.float64):
        return RenderFunction.apply(intensities, geo, kernels)
    # half precision (autocast): the kernels work in float32; autograd follows the casts
    return RenderFunction.apply(intensities.float(), geo, kernels).to(intensities.dtype)


def rasterize(points: torch.Tensor, offsets: torch.Tensor, intensities: torch.Tensor, size, eps: float = 1.0,
              overlap: str = "last", backend: str = "auto") -> torch.Tensor:
    """``render(geometry(points, offsets, size, eps, overlap), intensities)``: ``(P, 3)``, ``(B+1,)``, ``(P, C)``
    -> ``(B, C, H, W)``, differentiable with respect to ``intensities`` only."""
    return render(geometry(points.detach(), offsets, size, eps, overlap, backend), intensities, backend)
