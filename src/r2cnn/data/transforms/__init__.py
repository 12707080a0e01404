"""Preprocessing and augmentation of :class:`~r2cnn.sketch.Sketch` objects (docs/architecture.md "Layers").

Every function takes a sketch (and, when random, a ``numpy.random.Generator``) and returns a *new* sketch; the
input is never modified. Points are float32 ``(N, 3)`` = x, y, pen_end (see :mod:`r2cnn.sketch`).

- :func:`normalize`: into [-1, 1]^2, longest side fitted, centred, y down (the raster module's convention).
- :func:`rdp`, :func:`simplify`: Ramer-Douglas-Peucker per stroke, with an optional cap on the point count
  (paper Sec. 4.1: TU-Berlin sketches simplified to at most 448 points).
- :func:`raw_to_simplified`: Google's Quick, Draw! raw -> simplified pipeline (coordinates 0..255 ints).
- Augmentation as in Sketch-a-Net v2 (Yu et al., IJCV 2017) and the paper's Sec. 4.1: :func:`flip_horizontal`,
  :func:`remove_strokes`, :func:`deform` (per-stroke and whole-sketch), and :func:`shuffle_strokes` (the
  Random-Stroke-Order ablation of Table 2).
- :func:`make_transform`: the picklable per-sample pipeline used by the data loader
  (simplify -> augment -> stroke order -> normalize).

The per-point loops (RDP, resampling, deformation) are numba kernels (compiled once, cached on disk): they run
per sample inside data-loader workers, so they must cost microseconds, not milliseconds.

One idea per module: ``normalization``, ``simplification`` (RDP), ``raw`` (Google's raw -> simplified), ``augment``
(and stroke order), ``pipeline`` (:class:`SketchTransform`), and ``layout`` (helpers on the packed points); the
names above are imported from ``r2cnn.data.transforms`` as before.
"""

from r2cnn.data.transforms.augment import deform, flip_horizontal, remove_strokes, shuffle_strokes
from r2cnn.data.transforms.normalization import normalize
from r2cnn.data.transforms.pipeline import SketchTransform, make_transform
from r2cnn.data.transforms.raw import raw_to_simplified, resample
from r2cnn.data.transforms.simplification import rdp, rdp_thresholds, simplify

__all__ = [
    "normalize", "rdp", "rdp_thresholds", "simplify", "resample", "raw_to_simplified",
    "flip_horizontal", "remove_strokes", "deform", "shuffle_strokes", "SketchTransform", "make_transform",
]
