"""Normalisation: a sketch into [-1, 1]^2, longest side fitted, centred, y down (the raster module's convention)."""

from __future__ import annotations

import numpy as np

from r2cnn.data.transforms.layout import bbox, with_points
from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch

_FLOAT32_TINY = float(np.finfo(np.float32).tiny)

def normalize(sketch: Sketch, margin: float = 0.05) -> Sketch:
    """Map the sketch into [-1, 1]^2: the bounding box's longest side spans [-1 + margin, 1 - margin], centred.

    ``scale = (2 - 2 * margin) / max(w, h)`` applied around the bounding-box centre; y keeps pointing down. A
    sketch whose points all coincide goes to the origin, and so does one whose extent is below float32's smallest
    normal number (~1.2e-38): its scale would overflow float32 (inf x 0 = NaN at the centre), and such a drawing is
    a dot at any real scale. Returns a new float32 sketch (pen_end unchanged), always finite.
    """
    pts = sketch.points
    if len(pts) == 0:
        raise R2CNNError("cannot normalise an empty sketch (no points)")
    x0, y0, x1, y1 = bbox(pts)
    size = max(x1 - x0, y1 - y0)
    scale = (2.0 - 2.0 * margin) / size if size >= _FLOAT32_TINY else 0.0
    out = pts.copy()
    out[:, 0] = (pts[:, 0] - (x0 + x1) * 0.5) * scale
    out[:, 1] = (pts[:, 1] - (y0 + y1) * 0.5) * scale
    return with_points(sketch, out)
