"""The whole inference path of one sketch as plain tensor ops: normalised points -> attention -> NLR -> CNN -> logits.

:class:`InferenceModel` wraps a trained :class:`~r2cnn.models.SketchClassifier` without copying its weights:

- the attention comes from :meth:`AttentionEncoder.attention_one` (the BiLSTM without packed sequences);
- the image from :class:`r2cnn.raster.dense.DenseRasterizer` (scripted, so its chunk loop stays a loop when the
  model is traced), which draws exactly the pixels of :func:`r2cnn.raster.rasterize`;
- the logits from the model's own CNN and classifier.

Which models have this form is decided per model kind (:func:`unsupported_reason`): those whose CNN sees one NLR
image of the points, with learned (R2CNN), constant (CNN-only) or sketching-order intensities, and the Attentive
CNN. The others give a one-line reason.
"""

from __future__ import annotations

import torch
from torch import nn

from r2cnn.models import (AttentionEncoder, AttentiveCNN, CNNOnly, ContrastAttentionEncoder, R2CNN, SketchClassifier,
                          get_spec)
from r2cnn.raster.dense import DenseRasterizer

# model kind (r2cnn.models.KINDS) -> why it has no tensor-only inference path here
_UNSUPPORTED = {
    "stroke-thirds": "Sketch-a-Net v1's six stroke-thirds channels are drawn per stroke group, which the export "
                     "path does not do",
    "time": "the time-encoded channels (stroke order, point order) are not part of the export path",
    "attention-time": "the time-encoded channels (stroke order, point order) are not part of the export path",
    "attention-replaces-binary": "the time-encoded channels (stroke order, point order) are not part of the export "
                                 "path",
    "attention-gated-time": "the time-encoded channels (stroke order, point order) are not part of the export path",
    "r2cnn-stroke": "stroke-level attention (a mean over each stroke) is not part of the export path",
    "late-fusion": "two-branch late fusion also feeds the BiLSTM's final states to the classifier; the export path "
                   "covers models whose CNN sees one NLR image",
    "early-fusion": "two-branch early fusion draws the attention a second time at the C2 resolution inside the "
                    "CNN; the export path covers models whose CNN sees one NLR image",
}


def unsupported_reason(name: str) -> str | None:
    """Why the registered model ``name`` cannot be exported (one line), or None when it can."""
    return _UNSUPPORTED.get(get_spec(name).kind)


def _intensity_kind(model: SketchClassifier) -> str:
    """"attention", "constant" or "order": where the NLR's intensities come from; raises for other models."""
    from r2cnn.errors import R2CNNError

    # a subclass (attention + time channels) draws more than the attention; a subclass of the encoder (stroke-level
    # attention) computes it otherwise than attention_one
    if type(model) is R2CNN and type(model.encoder) in (AttentionEncoder, ContrastAttentionEncoder):
        return "attention"
    if type(model) is CNNOnly and model.intensity in ("constant", "order"):  # subclasses draw other channels
        return model.intensity
    if type(model) is AttentiveCNN:
        return "constant"
    name = getattr(model, "config", {}).get("name", type(model).__name__)
    reason = (unsupported_reason(name) if name in _registered() else None) or "not a model kind the export covers"
    raise R2CNNError(f"{name} cannot be exported: {reason}")


def _registered() -> set[str]:
    from r2cnn.models import list_models

    return set(list_models())


class SketchingOrder(nn.Module):
    """Table 2's Attention-using-Sketching-Order for one sketch: ``(N, 3)`` -> ``(N,)``, 1 at the first point
    falling linearly to 0 at the last (:func:`r2cnn.models.sketching_order_intensities`, same float32 maths)."""

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        index = torch.arange(points.shape[0], device=points.device).float()
        return 1.0 - index / index[-1:].clamp(min=1)


class _CNN(nn.Module):
    """image ``(1, C, H, W)`` -> logits ``(1, K)`` with the model's own layers."""

    def __init__(self, model: SketchClassifier):
        super().__init__()
        self.backbone, self.classifier = model.backbone, model.classifier
        self.attention = model.attention if isinstance(model, AttentiveCNN) else None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.attention is not None:
            features, _ = self.attention(self.backbone.c2(image))
            return self.classifier(self.backbone.head(features))
        return self.classifier(self.backbone(image))


class InferenceModel(nn.Module):
    """``forward(points (N, 3)) -> (logits (1, K), attention (N,))`` for one normalised sketch.

    ``attention`` is the per-point attention a_i (Sec. 3.2), the mean over the C channels when C > 1, or all ones
    for a model without learned attention (:attr:`has_attention` False). Call :meth:`eval` before use (dropout).
    ``scripted=False`` keeps the rasteriser a plain module (eager use; export needs it scripted).
    """

    def __init__(self, model: SketchClassifier, scripted: bool = True):
        super().__init__()
        self.intensity = _intensity_kind(model)
        self.has_attention = self.intensity == "attention"
        self.channels = model.encoder.channels if self.has_attention else model.in_channels
        self.encoder = model.encoder if self.has_attention else None
        rasterizer = DenseRasterizer(model.raster_size, model.raster_eps, model.overlap)
        order = SketchingOrder()
        if scripted:
            import warnings

            with warnings.catch_warnings():  # torch.jit.script's deprecation notice (see r2cnn.export docstring)
                warnings.simplefilter("ignore", FutureWarning)
                rasterizer, order = torch.jit.script(rasterizer), torch.jit.script(order)
        self.rasterizer = rasterizer
        self.order = order
        self.cnn = _CNN(model)

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ones = torch.ones_like(points[:, :1])  # (N, 1), N kept dynamic under tracing
        if self.encoder is not None:
            intensities = self.encoder.attention_one(points)
            attention = intensities.mean(1)
        else:
            value = self.order(points)[:, None] if self.intensity == "order" else ones
            intensities = value.repeat(1, self.channels)
            attention = ones[:, 0]
        image = self.rasterizer(points, intensities)
        return self.cnn(image), attention
