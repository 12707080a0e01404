"""The data loader's per-sample pipeline: simplify -> augment -> stroke order -> normalise, picklable."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from r2cnn.data.transforms.augment import deform, flip_horizontal, remove_strokes, shuffle_strokes
from r2cnn.data.transforms.normalization import normalize
from r2cnn.data.transforms.simplification import simplify
from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch

STROKE_ORDERS = ("human", "random")


@dataclass(frozen=True)
class SketchTransform:
    """``(sketch, rng) -> Sketch``: simplify -> augment -> stroke order -> :func:`normalize`. Picklable.

    Built by :func:`make_transform`; see there for the fields. ``rng`` may be ``None`` when nothing random is
    enabled (evaluation in human stroke order).
    """

    train: bool
    max_points: int | None = None
    rdp_epsilon: float | None = None
    flip: float = 0.0
    stroke_removal: float = 0.0
    deform: float = 0.0
    stroke_order: str = "human"
    margin: float = 0.05

    @property
    def needs_rng(self) -> bool:
        augment = self.train and (self.flip > 0 or self.stroke_removal > 0 or self.deform > 0)
        return augment or self.stroke_order == "random"

    def __call__(self, sketch: Sketch, rng: np.random.Generator | None = None) -> Sketch:
        if rng is None and self.needs_rng:
            raise R2CNNError("this transform is random: pass a numpy Generator (seeded per sample)")
        if self.max_points is not None or self.rdp_epsilon is not None:
            sketch = simplify(sketch, 0.0 if self.rdp_epsilon is None else self.rdp_epsilon, self.max_points)
        if self.train:
            # one uniform draw per augmentation, always consumed, so each one's randomness is independent of
            # whether the others fired
            u_flip, u_remove, u_deform = rng.random(3) if self.needs_rng else (1.0, 1.0, 1.0)
            if u_flip < self.flip:
                sketch = flip_horizontal(sketch)
            if u_remove < self.stroke_removal:
                sketch = remove_strokes(sketch, rng)
            if u_deform < self.deform:
                sketch = deform(sketch, rng)
        if self.stroke_order == "random":
            sketch = shuffle_strokes(sketch, rng)
        return normalize(sketch, self.margin)


def make_transform(train: bool, *, max_points: int | None = None, rdp_epsilon: float | None = None,
                   flip: float = 0.0, stroke_removal: float = 0.0, deform: float = 0.0,
                   stroke_order: str = "human", margin: float = 0.05) -> SketchTransform:
    """The data loader's per-sample transform ``(sketch, rng) -> Sketch``, ending in :func:`normalize`.

    - ``max_points`` / ``rdp_epsilon``: :func:`simplify` first when either is set (epsilon defaults to 0, i.e.
      only collinear points are dropped, when only the cap is given; paper Sec. 4.1: TU-Berlin at most 448).
    - ``flip``, ``stroke_removal``, ``deform``: probabilities (each in [0, 1]) of applying
      :func:`flip_horizontal`, :func:`remove_strokes`, :func:`deform` to a training sample; ignored when
      ``train`` is False.
    - ``stroke_order``: ``"human"`` keeps the drawing order; ``"random"`` shuffles strokes, in training *and*
      evaluation (it is the Random-Stroke-Order model's input, paper Table 2).
    - ``margin``: see :func:`normalize`.
    """
    for name, p in (("flip", flip), ("stroke_removal", stroke_removal), ("deform", deform)):
        if not 0.0 <= p <= 1.0:
            raise R2CNNError(f"transform option {name} is a probability in [0, 1], not {p}")
    if stroke_order not in STROKE_ORDERS:
        raise R2CNNError(f"stroke_order must be one of {', '.join(STROKE_ORDERS)}, not {stroke_order!r}")
    if max_points is not None and max_points < 1:
        raise R2CNNError(f"max_points must be >= 1, not {max_points}")
    if rdp_epsilon is not None and rdp_epsilon < 0:
        raise R2CNNError(f"rdp_epsilon must be >= 0, not {rdp_epsilon}")
    if not 0.0 <= margin < 1.0:
        raise R2CNNError(f"margin must be in [0, 1), not {margin}")
    return SketchTransform(bool(train), None if max_points is None else int(max_points),
                           None if rdp_epsilon is None else float(rdp_epsilon), float(flip), float(stroke_removal),
                           float(deform), stroke_order, float(margin))
