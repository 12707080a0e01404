"""Classify sketches with a trained checkpoint: :class:`Predictor` (Python) behind ``r2cnn predict``.

A sketch is any form of the input contract (:mod:`r2cnn.strokes`: a :class:`~r2cnn.sketch.Sketch`, strokes
``[[xs, ys], ...]`` or ``[[xs, ys, ts], ...]``, an ``(N, 3)`` array), checked as every entry point checks it. It
goes through the checkpoint config's evaluation transform (normalisation, and the stroke-order change of an
ablation preset), exactly what the model saw at validation time.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from r2cnn.sketch import Sketch, SketchBatch
from r2cnn.strokes import check_top_k


class Predictor:
    """``Predictor("run/best.pt").predict(sketch) -> [(class, probability), ...]`` best first.

    ``sketch`` is a :class:`r2cnn.Sketch` in any coordinates (as read by :func:`r2cnn.data.formats.read_sketches`),
    Quick, Draw! strokes ``[[xs, ys], ...]`` or raw ``[[xs, ys, ts], ...]``, or an ``(N, 3)`` array of x, y,
    pen_end; malformed input (:mod:`r2cnn.strokes`) and a ``top_k`` that is not a whole number >= 1 are one-line
    :class:`~r2cnn.errors.R2CNNError` s.
    """

    def __init__(self, checkpoint: str, device: str | torch.device = "cpu"):
        from r2cnn.engine.factory import build_transform, load_model

        self.device = torch.device(device)
        self.model, ckpt = load_model(checkpoint, self.device)
        self.classes: list[str] = list(ckpt["classes"])
        self.config: dict = ckpt["config"]
        self.transform = build_transform(self.config, train=False)

    def _batch(self, sketches: Sequence[Sketch]) -> tuple[list[Sketch], SketchBatch]:
        """The sketches after the evaluation transform, and packed on the device."""
        # A fixed generator: the evaluation transform is deterministic except for an ablation's random stroke
        # order, which then stays the same from call to call.
        rng = np.random.default_rng(0)
        prepared = [self.transform(Sketch.checked(s), rng) for s in sketches]
        return prepared, SketchBatch.from_sketches(prepared, labels=[-1] * len(prepared)).to(self.device)

    @torch.no_grad()
    def probabilities(self, sketches: Sequence[Sketch]) -> torch.Tensor:
        """Class probabilities ``(B, K)`` for a batch of sketches (subnormals flushed to zero meanwhile, as in
        training: :func:`r2cnn.engine.precision.denormals_flushed`)."""
        from r2cnn.engine.precision import denormals_flushed

        _, batch = self._batch(sketches)
        with denormals_flushed():
            return torch.softmax(self.model(batch).float(), dim=1).cpu()

    @torch.no_grad()
    def predict_with_attention(self, sketch: Sketch | np.ndarray, top_k: int = 5) -> dict:
        """Top-k for one sketch and the model's per-point attention (paper Sec. 3.2).

        Returns ``dict(top=[(class, probability), ...], points=(n, 3) float32, attention=(n, C) float32 or
        None)``: ``points`` are the sketch as the model saw it (after the evaluation transform: normalised,
        maybe simplified or reordered, so ``n`` may differ from the input's), ``attention`` the intensity of each
        of them, or None for a model without per-point attention (CNN-only).
        """
        from r2cnn.engine.precision import denormals_flushed

        top_k = check_top_k(top_k)
        prepared, batch = self._batch([sketch])
        with denormals_flushed():
            out = self.model.forward_with_attention(batch)
        probs = torch.softmax(out["logits"].float(), dim=1)[0].cpu()
        values, indices = probs.topk(min(top_k, len(self.classes)))
        attention = out.get("attention")
        return dict(top=[(self.classes[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())],
                    points=prepared[0].points,
                    attention=None if attention is None else attention.float().cpu().numpy())

    def predict(self, sketch: Sketch | np.ndarray, top_k: int = 5) -> list[tuple[str, float]]:
        """Top-k (class name, probability) for one sketch, most likely first."""
        return self.predict_many([sketch], top_k)[0]

    def predict_many(self, sketches: Iterable[Sketch], top_k: int = 5, batch_size: int = 64):
        """Top-k lists for many sketches, batched."""
        sketches = list(sketches)
        results = []
        k = min(check_top_k(top_k), len(self.classes))
        for start in range(0, len(sketches), batch_size):
            probs = self.probabilities(sketches[start:start + batch_size])
            values, indices = probs.topk(k, dim=1)
            results.extend([[(self.classes[i], float(p)) for p, i in zip(vs.tolist(), ix.tolist())]
                             for vs, ix in zip(values, indices)])
        return results
