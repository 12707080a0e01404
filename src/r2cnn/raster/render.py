"""Rendering from a :class:`Geometry`: eq. (1) forward, eq. (3) backward, wrapped in one autograd Function.

Each backend module provides ``forward(geo, intensities) -> (image (B*H*W, C), saved)`` and
``backward(geo, grad (B*H*W, C), saved) -> (P, C)``; this module only adapts layouts and autograd.
"""

from __future__ import annotations

import torch

from r2cnn.raster.geometry import Geometry


class RenderFunction(torch.autograd.Function):
    """Images are built pixel-major, ``(B, H, W, C)`` in memory, and returned as the ``(B, C, H, W)`` view of it
    (``torch.channels_last``): one stroke pixel's C values are then adjacent, for writing and for gathering."""

    @staticmethod
    def forward(ctx, intensities: torch.Tensor, geo: Geometry, kernels) -> torch.Tensor:
        h, w = geo.size
        image, saved = kernels.forward(geo, intensities)
        ctx.geo, ctx.kernels = geo, kernels
        ctx.save_for_backward(saved)
        return image.view(geo.batch_size, h, w, intensities.shape[1]).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (saved,) = ctx.saved_tensors
        c = grad.shape[1]
        grad = grad.permute(0, 2, 3, 1).contiguous().view(-1, c)  # free when grad is channels_last already
        return ctx.kernels.backward(ctx.geo, grad, saved), None, None
