"""Rasterised sketches for the classic rows: the same images the CNN-only rows see.

A sketch goes through the preset's evaluation transform (normalisation into [-1, 1]^2, and RDP simplification
for TU-Berlin), then the NLR (:mod:`r2cnn.raster`) at constant intensity 1, exactly as
:class:`r2cnn.models.CNNOnly` draws it: stroke pixels 1, background 0. Images come in chunks so that memory
does not grow with the number of sketches.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from r2cnn.data.store import SketchStore
from r2cnn.sketch import SketchBatch

DEFAULT_CHUNK = 256


def iterate_images(store: SketchStore, indices: np.ndarray, *, size: int, eps: float = 1.0,
                   eval_transform: dict | None = None, chunk: int = DEFAULT_CHUNK
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(indices (B,), images (B, size, size) float32 in {0, 1}, labels (B,) int64)`` over ``indices``
    of ``store``, ``chunk`` sketches at a time, in the order given."""
    from r2cnn import raster
    from r2cnn.data.transforms import make_transform

    transform = make_transform(False, **dict(eval_transform or {}))
    rng = np.random.default_rng(0)  # the evaluation transform is deterministic; a generator is still required
    indices = np.asarray(indices, dtype=np.int64)
    for start in range(0, len(indices), chunk):
        part = indices[start:start + chunk]
        sketches = [transform(store[int(i)], rng) for i in part]
        batch = SketchBatch.from_sketches(sketches)
        ones = torch.ones(batch.points.shape[0], 1)
        images = raster.rasterize(batch.points, batch.offsets, ones, size, eps)[:, 0]
        yield part, images.contiguous().numpy(), batch.labels.numpy()
