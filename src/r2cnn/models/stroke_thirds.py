"""Sketch-a-Net v1's drawing-order channels (``cnn-sketchanet-v1``, one of the paper's Table 1 early deep baselines).

- :class:`StrokeThirdsCNN`: Sketch-a-Net v1 (Yu et al., "Sketch-a-Net that Beats Humans", BMVC 2015), the
  multi-channel network: the same eight layers as v2 (:class:`~r2cnn.models.backbones.SketchANet`) on six input
  channels that encode the drawing order, made with the NLR at constant intensity (:func:`stroke_thirds`).
  Simplified: one scale (v1 fuses networks at several scales with joint Bayesian fusion).
"""

from __future__ import annotations

import torch
from torch import nn

from r2cnn.models.r2cnn import CNNOnly
from r2cnn.sketch import SketchBatch

STROKE_THIRDS_CHANNELS = 6


def stroke_thirds(points: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Sketch-a-Net v1's six channels: the strokes of each sketch, in drawing order, are cut into thirds (stroke
    s of S is in third ``floor(3 s / S)``); channels 0-2 hold one third each, channels 3-5 the strokes up to the
    end of the first, second and last third. -> ``(P, 6)`` 0/1 intensities for the NLR.

    ``points`` ``(P, 3)`` packed x, y, pen_end; ``offsets`` ``(B+1,)``."""
    p = points.shape[0]
    ends = (points[:, 2] > 0.5).long()
    before = torch.cumsum(ends, 0) - ends  # strokes finished before each point, over the whole batch
    lengths = offsets[1:] - offsets[:-1]
    sketch = torch.repeat_interleave(torch.arange(lengths.numel(), device=points.device), lengths, output_size=p)
    first = before[offsets[:-1][sketch]]
    strokes = before[offsets[1:][sketch] - 1] - first + 1
    third = torch.clamp(3 * (before - first) // strokes, max=2)
    k = torch.arange(3, device=points.device)
    own = third[:, None] == k
    upto = third[:, None] <= k
    return torch.cat([own, upto], dim=1).to(points.dtype)


class StrokeThirdsCNN(CNNOnly):
    """A CNN on the six stroke-order channels of :func:`stroke_thirds` (Sketch-a-Net v1)."""

    def __init__(self, backbone: nn.Module, num_classes: int, **raster):
        super().__init__(backbone, num_classes, STROKE_THIRDS_CHANNELS, "constant", **raster)

    def intensities(self, batch: SketchBatch) -> torch.Tensor:
        return stroke_thirds(batch.points, batch.offsets)
