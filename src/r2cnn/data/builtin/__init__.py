"""Built-in data: a procedural sketch generator, so the main job, tests and demos run without any download.

Twelve classes drawn the way people draw them in Quick, Draw!: wobbly strokes in a typical (but not fixed)
order, varying shape, proportions, stroke count and detail, sometimes with distractor strokes. Some classes
share parts on purpose (house / envelope: a rectangle with a triangle; sun / flower: a circle with things around
it; umbrella / cup / fish: arcs), so a classifier has to look at the arrangement. Coordinates end as Quick, Draw!
*simplified* data: ints in 0..255 (longest side 255), RDP epsilon 2 (:func:`r2cnn.data.transforms.raw_to_simplified`).
How each class is drawn: ``docs/builtin-data.md``.

- :data:`CLASSES`: class names.
- :func:`draw`: one sketch of a class from a ``numpy.random.Generator``.
- :func:`generate`: ``n_per_class`` sketches of every class, deterministic by ``seed`` (:func:`iterate`: lazily).
- :func:`split_sizes`: how a store of built-in sketches alone is split (``r2cnn prepare --builtin N`` without
  ``--split-sizes``, ``r2cnn demo``).

The classes' drawers are in :mod:`~r2cnn.data.builtin.classes`, the hand-drawn pen they draw with in
:mod:`~r2cnn.data.builtin.pen`.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from r2cnn.data.builtin.classes import CLASSES, DRAWERS, distractors
from r2cnn.data.builtin.pen import Pen
from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch

__all__ = ["CLASSES", "draw", "generate", "iterate", "key_id", "split_sizes"]


def draw(class_name: str, rng: np.random.Generator) -> Sketch:
    """One sketch of ``class_name`` (a name in :data:`CLASSES`), 0..255 int coordinates like Quick, Draw!
    simplified data; ``label`` is the class name, ``meta`` is empty (see :func:`generate`)."""
    from r2cnn.data.transforms import raw_to_simplified  # numba compiles on first use; keep import light

    try:
        drawer = DRAWERS[class_name]
    except KeyError:
        raise R2CNNError(f"unknown built-in class {class_name!r}; classes: {', '.join(CLASSES)}") from None
    pen = Pen(rng)
    distract_first = rng.random() < 0.05
    distract = rng.random() < 0.25
    if distract and distract_first:
        distractors(pen, rng)
    drawer(pen, rng)
    if distract and not distract_first:
        distractors(pen, rng)
    # the whole drawing: small rotation and anisotropic scaling (people draw at different angles and aspect)
    a = rng.normal(0.0, 0.08)
    m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.diag(np.exp(rng.normal(0, 0.1, 2)))
    # paths are already sampled about every 3 output pixels, so Google's 1-pixel resampling would change nothing
    return raw_to_simplified(Sketch(pen.points(m), class_name), spacing=None)


_KEY_BASE = 1 << 40


def key_id(seed: int, class_index: int, index: int) -> int:
    """The ``meta["key_id"]`` of built-in sketch ``index`` of class ``class_index`` generated with ``seed``:
    ``seed * 2**40 + class_index * 2**32 + index`` (unique for seeds < 2**23, < 256 classes, < 2**32 per class)."""
    return int(seed) * _KEY_BASE + class_index * (1 << 32) + index


def iterate(n_per_class: int, seed: int = 0, classes: list[str] | None = None) -> Iterator[Sketch]:
    """The sketches of :func:`generate`, one at a time (memory stays flat for millions of sketches)."""
    if n_per_class < 0:
        raise R2CNNError(f"n_per_class must be >= 0, not {n_per_class}")
    if not 0 <= seed < (1 << 23):
        raise R2CNNError(f"built-in data seed must be in [0, 2**23), not {seed}")
    names = CLASSES if classes is None else list(classes)
    for name in names:
        if name not in DRAWERS:
            raise R2CNNError(f"unknown built-in class {name!r}; classes: {', '.join(CLASSES)}")
    for name in names:
        c = CLASSES.index(name)
        for i in range(n_per_class):
            sketch = draw(name, np.random.default_rng((seed, c, i)))
            sketch.meta.update(key_id=key_id(seed, c, i), source="builtin", seed=seed)
            yield sketch


def generate(n_per_class: int, seed: int = 0, classes: list[str] | None = None) -> list[Sketch]:
    """``n_per_class`` sketches of every class in :data:`CLASSES` (or ``classes``), class after class.

    Deterministic: sketch ``i`` of class ``c`` is drawn from its own generator seeded with ``(seed, c, i)``,
    so it does not depend on ``n_per_class`` or on the other classes. ``meta``: ``key_id`` (see :func:`key_id`),
    ``source`` = ``"builtin"``, ``seed``. :func:`iterate` yields the same sketches lazily.
    """
    return list(iterate(n_per_class, seed, classes))


def split_sizes(n_per_class: int) -> tuple[int, int, int]:
    """Per-class (train, valid, test) sizes of a store of ``n_per_class`` built-in sketches a class: valid and test
    each get a tenth of the class, or, when more, a quarter of it up to 5 sketches (so that a small store still
    measures something), ``max(round(n / 10), min(5, n // 4))``; the rest is train. E.g. 10 -> 6/2/2,
    30 -> 20/5/5, 60 -> 48/6/6, 700 -> 560/70/70. ``r2cnn prepare --builtin N`` (without ``--split-sizes``) and
    ``r2cnn demo`` split by it."""
    n = int(n_per_class)
    held = max(round(n / 10), min(5, n // 4))
    return n - 2 * held, held, held
