"""Recognition for the web page: strokes in, top-k classes and per-point attention out, one request at a time.

The model sees the sketch after the checkpoint's evaluation transform (normalised, and for some presets
simplified or with its strokes reordered), so its attention belongs to *those* points. :func:`attention_at`
carries it back to the points the person drew: exactly when the transform kept every point in place (the usual
case), else from the nearest point the model saw.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from r2cnn.data.formats.common import points_from_strokes
from r2cnn.data.transforms import normalize
from r2cnn.sketch import Sketch

# Pairs of points compared at once by the nearest-neighbour search (bounds its memory to ~32 MB of float64).
_PAIRS_PER_CHUNK = 1 << 22


def attention_at(points: np.ndarray, seen: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """Attention at each input point.

    Args:
        points: ``(N, 3)`` the input sketch, normalised like the model's input (x, y in [-1, 1], pen_end).
        seen: ``(M, 3)`` the points the model saw (after its evaluation transform).
        attention: ``(M, C)`` the model's attention at ``seen``.

    Returns:
        ``(N, C)``: ``attention`` itself when ``seen`` is ``points`` (same count and places), otherwise the
        attention of the nearest seen point (points the transform dropped, strokes it reordered).
    """
    if seen.shape == points.shape and np.allclose(seen, points, atol=1e-5):
        return attention
    nearest = np.empty(len(points), np.int64)
    step = max(1, _PAIRS_PER_CHUNK // max(1, len(seen)))
    for start in range(0, len(points), step):
        diff = points[start:start + step, None, :2].astype(np.float64) - seen[None, :, :2]
        nearest[start:start + step] = np.einsum("nmk,nmk->nm", diff, diff).argmin(axis=1)
    return attention[nearest]


class Recognizer:
    """A :class:`~r2cnn.engine.predict.Predictor` behind a lock, for a server's worker threads.

    PyTorch inference in eval mode keeps no state between calls, but two requests at once would only compete for
    the same cores; the lock serves them one after the other and keeps the predictor's use single-threaded.
    ``has_attention`` is found by one prediction at start-up (which also warms the model up).
    """

    def __init__(self, predictor, source: str = ""):
        self.predictor = predictor
        self.source = source
        self.classes: list[str] = list(predictor.classes)
        self.model_name: str = predictor.config.get("model", "?")
        self._lock = threading.Lock()
        probe = self.recognize([np.array([[0.0, 0.0], [1.0, 1.0]])], top_k=1)
        self.has_attention: bool = probe["attention"] is not None

    def recognize(self, strokes: Sequence[np.ndarray], top_k: int = 5, source: str = "request") -> dict:
        """Top-k classes and per-point attention for a drawing.

        Args:
            strokes: ``S`` arrays ``(n_i, 2)`` of x, y in any coordinate range (y down), in drawing order.
            top_k: how many classes (at most the model's number of classes).
            source: names the drawing in a :class:`~r2cnn.errors.SketchFormatError` (empty drawing or stroke,
                coordinates not finite in float32, too many points).

        Returns:
            ``dict(top=[(class, probability), ...], attention=S lists of n_i floats or None, channels=C or
            None)``: the attention is the mean over the model's C channels, in [0, 1]; None for a model without
            per-point attention.
        """
        lengths = np.array([len(s) for s in strokes], np.int64)
        xy = np.concatenate(strokes) if len(strokes) else np.zeros((0, 2))
        sketch = Sketch(points_from_strokes(xy, lengths, source))
        with self._lock:
            out = self.predictor.predict_with_attention(sketch, top_k)
        if out["attention"] is None:
            return dict(top=out["top"], attention=None, channels=None)
        normalised = normalize(sketch, self.predictor.transform.margin).points
        per_point = attention_at(normalised, out["points"], out["attention"]).mean(axis=1)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        return dict(top=out["top"], channels=int(out["attention"].shape[1]),
                    attention=[per_point[bounds[i]:bounds[i + 1]].tolist() for i in range(len(lengths))])
