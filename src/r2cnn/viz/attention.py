"""A checkpoint's attention on chosen sketches: per point, per pixel, per stroke (paper Sec. 3.2, Figs. 3-5).

:class:`AttentionModel` loads a checkpoint and turns sketches into :class:`SketchView` s: the sketch as the model
saw it (the checkpoint's evaluation transform, so normalised to [-1, 1]^2), the RNN's per-point attention
``(N, C)``, the attention map the CNN saw (the NLR of Sec. 3.3 at the model's canvas), the stroke pixels, the
sketching-order encoding of Table 2 / Fig. 5 on the same pixels, and the class probabilities.

Maps are rendered with the model's own rasteriser and canvas, so they are exactly what the CNN saw; non-stroke
pixels are 0 there (the paper: "non-stroke pixels are set to have an attention value of zero"), and
``stroke_mask`` tells them apart from stroke pixels whose attention is close to 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from r2cnn.errors import R2CNNError
from r2cnn.sketch import Sketch, SketchBatch


def stroke_importance(attention: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Each stroke's mean attention: ``attention`` ``(N, C)`` per point (or ``(N,)``), ``bounds`` ``(S+1,)``
    stroke starts plus the end (:attr:`Sketch.stroke_bounds`) -> ``(S,)`` float64, the mean over the stroke's
    points and the C channels."""
    per_point = np.asarray(attention, np.float64).reshape(len(attention), -1).mean(axis=1)
    bounds = np.asarray(bounds, np.int64)
    return np.add.reduceat(per_point, bounds[:-1]) / np.diff(bounds)


@dataclass
class SketchView:
    """One sketch through one model; arrays are numpy, on the CPU.

    - ``sketch``: as the model saw it (evaluation transform applied), ``points`` ``(N, 3)`` in [-1, 1]^2.
    - ``attention``: ``(N, C)`` per-point attention in [0, 1], or None for a model without an RNN attention.
    - ``attention_map``: ``(C, H, W)`` the attention rasterised by the NLR (eq. 1), or None.
    - ``stroke_mask``: ``(H, W)`` bool, the pixels within ``eps`` of a stroke.
    - ``order_map``: ``(H, W)`` the sketching-order encoding (1 at the first point, 0 at the last).
    - ``probabilities``: ``(K,)``; ``label``: the true class index (None when unknown); ``index``: store index.
    """

    sketch: Sketch
    attention: np.ndarray | None
    attention_map: np.ndarray | None
    stroke_mask: np.ndarray
    order_map: np.ndarray
    probabilities: np.ndarray
    label: int | None = None
    index: int | None = None

    @property
    def importance(self) -> np.ndarray | None:
        """``(S,)`` each stroke's mean attention (:func:`stroke_importance`), None without attention."""
        return None if self.attention is None else stroke_importance(self.attention, self.sketch.stroke_bounds)

    def top(self, k: int = 3) -> list[tuple[int, float]]:
        """The ``k`` most likely class indices with their probabilities, best first."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(int(i), float(self.probabilities[i])) for i in order]

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.top(1)[0][0] == self.label


class AttentionModel:
    """A checkpoint ready to explain sketches: ``AttentionModel("run/best.pt").views(sketches)``.

    ``has_attention`` is False for models whose input has no per-point attention from an RNN (CNN-only
    baselines, Attentive-ResNet50, late fusion); their views have ``attention = attention_map = None``.
    """

    def __init__(self, checkpoint: str, device: str | torch.device = "cpu"):
        from r2cnn.engine.factory import build_transform, load_model
        from r2cnn.models.encoder import AttentionEncoder

        self.path = str(checkpoint)
        self.device = torch.device(device)
        self.model, ckpt = load_model(checkpoint, self.device)
        self.classes: list[str] = list(ckpt["classes"])
        self.config: dict = ckpt["config"]
        self.step = ckpt.get("step")
        self.transform = build_transform(self.config, train=False)
        self.has_attention = isinstance(getattr(self.model, "encoder", None), AttentionEncoder)

    @property
    def name(self) -> str:
        return str(self.config.get("model"))

    def no_attention_message(self) -> str:
        return (f"{self.path}: {self.name} is a model without per-point attention (its CNN sees the binary "
                "raster), so there is no attention to show")

    def prepare(self, sketches: Sequence[Sketch]) -> list[Sketch]:
        """The evaluation transform of the checkpoint's config, as :class:`r2cnn.engine.predict.Predictor` applies
        it (a fixed generator, so an ablation's random stroke order is the same from call to call)."""
        rng = np.random.default_rng(0)
        return [self.transform(s, rng) for s in sketches]

    @torch.no_grad()
    def run(self, prepared: Sequence[Sketch], maps: bool = False) -> dict:
        """One forward pass over already prepared sketches (one batch).

        -> ``probabilities`` ``(B, K)``, ``attention`` ``(P, C)`` or None, ``offsets`` ``(B+1,)``; with ``maps``
        also ``attention_map`` ``(B, C, H, W)`` or None, ``stroke_mask`` ``(B, H, W)``, ``order_map`` ``(B, H, W)``.
        """
        from r2cnn.engine.precision import denormals_flushed
        from r2cnn.models.r2cnn import sketching_order_intensities

        batch = SketchBatch.from_sketches(prepared, labels=[-1] * len(prepared)).to(self.device)
        with denormals_flushed():
            out = self.model.forward_with_attention(batch)
        attention = out["attention"].float() if self.has_attention else None
        result = {"probabilities": torch.softmax(out["logits"].float(), dim=1).cpu().numpy(),
                  "attention": None if attention is None else attention.cpu().numpy(),
                  "offsets": batch.offsets.cpu().numpy()}
        if maps:
            p = batch.points.shape[0]
            render = self.model.render
            ones = batch.points.new_ones(p, 1)
            order = sketching_order_intensities(batch.offsets, p)[:, None]
            result["stroke_mask"] = (render(batch, ones)[:, 0] > 0).cpu().numpy()
            result["order_map"] = render(batch, order)[:, 0].cpu().numpy()
            result["attention_map"] = None if attention is None else render(batch, attention).cpu().numpy()
        return result

    def views(self, sketches: Sequence[Sketch], batch_size: int = 32) -> list[SketchView]:
        """:class:`SketchView` s of ``sketches`` (any coordinates; ``label`` an int class index or None;
        ``meta["index"]`` is kept as the view's ``index``)."""
        views = []
        for start in range(0, len(sketches), batch_size):
            chunk = sketches[start:start + batch_size]
            prepared = self.prepare(chunk)
            out = self.run(prepared, maps=True)
            o = out["offsets"]
            for b, (original, sketch) in enumerate(zip(chunk, prepared)):
                att = None if out["attention"] is None else out["attention"][o[b]:o[b + 1]]
                views.append(SketchView(
                    sketch, att, None if out["attention_map"] is None else out["attention_map"][b],
                    out["stroke_mask"][b], out["order_map"][b], out["probabilities"][b],
                    int(original.label) if isinstance(original.label, (int, np.integer)) else None,
                    original.meta.get("index")))
        return views

    def predict_prepared(self, prepared: Sequence[Sketch], batch_size: int = 64) -> np.ndarray:
        """Predicted class indices ``(B,)`` of already prepared sketches."""
        preds = [self.run(prepared[s:s + batch_size])["probabilities"].argmax(1)
                 for s in range(0, len(prepared), batch_size)]
        return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def open_store(data: str, classes: Sequence[str]):
    """The store at ``data``, checked to have the checkpoint's ``classes`` in the same order."""
    from r2cnn.data.store import SketchStore

    store = SketchStore(data)
    if list(store.classes) != list(classes):
        raise R2CNNError(f"{data}: the store's classes differ from the checkpoint's ({len(store.classes)} vs "
                         f"{len(classes)} classes, or another order)")
    return store


def check_same_classes(a: AttentionModel, b: AttentionModel) -> None:
    if a.classes != b.classes:
        raise R2CNNError(f"{b.path}: its classes differ from {a.path}'s, so the two cannot be compared")
