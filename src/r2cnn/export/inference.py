"""The whole inference path of one sketch as plain tensor ops: normalised points -> attention -> NLR -> CNN -> logits.

:class:`InferenceModel` wraps a trained :class:`~r2cnn.models.SketchClassifier` without copying its weights:

- the attention comes from :meth:`AttentionEncoder.attention_one` (the BiLSTM without packed sequences);
- the image from :class:`r2cnn.raster.dense.DenseRasterizer` (scripted, so its chunk loop stays a loop when the
  model is traced), which draws exactly the pixels of :func:`r2cnn.raster.rasterize`;
- the logits from the model's own CNN and classifier.

Which models have this form is decided per model kind (:func:`unsupported_reason`): those whose CNN sees one NLR
image of the points, with learned (R2CNN), constant (CNN-only) or sketching-order intensities, or with the
time-encoded channels (stroke order, point order: :class:`TimeEncoding`) alone or next to the attention, and the
Attentive CNN. The others give a one-line reason.
"""

from __future__ import annotations

import torch
from torch import nn

from r2cnn.models import (AttentionEncoder, AttentionTimeEncoded, AttentiveCNN, CNNOnly, ContrastAttentionEncoder,
                          R2CNN, SketchClassifier, get_spec)
from r2cnn.raster.dense import DenseRasterizer

# model kind (r2cnn.models.KINDS) -> why it has no tensor-only inference path here
_UNSUPPORTED = {
    "stroke-thirds": "Sketch-a-Net v1's six stroke-thirds channels are drawn per stroke group, which the export "
                     "path does not do",
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
    """Where the NLR's intensities come from: "attention", "constant", "order", "time" (the binary image and the
    time-encoded channels) or "attention-next" / "attention-replace" / "attention-gated" (the attention with the
    time-encoded channels, :class:`~r2cnn.models.AttentionTimeEncoded`); raises for other models."""
    from r2cnn.errors import R2CNNError

    # a subclass of the encoder (stroke-level attention) computes it otherwise than attention_one
    plain_encoder = type(getattr(model, "encoder", None)) in (AttentionEncoder, ContrastAttentionEncoder)
    if type(model) is R2CNN and plain_encoder:
        return "attention"
    if type(model) is AttentionTimeEncoded and plain_encoder:
        return f"attention-{model.fixed}"
    if type(model) is CNNOnly and model.intensity in ("constant", "order", "time"):  # subclasses draw other channels
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


class TimeEncoding(nn.Module):
    """The time-encoded channels of one sketch: ``(N, 3)`` -> ``(N, 2)`` (stroke order, point order), the values of
    :func:`r2cnn.models.time_encoding_intensities` for a batch of one (same float32 maths): a stroke starts at the
    first point and after every pen_end; stroke order falls linearly from 1 on the first stroke to 0 on the last,
    point order from 1 at a stroke's first point to 0 at its last (one stroke, or a dot: 1). Written for one sketch
    because the exporter refuses the batched function's ``torch.diff`` at opset 17."""

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        n = points.shape[0]
        starts = torch.ones_like(points[:, 2], dtype=torch.bool)
        starts[1:] = points[:-1, 2] > 0.5
        stroke = torch.cumsum(starts.long(), 0) - 1
        stroke_order = 1.0 - stroke.float() / stroke[-1:].clamp(min=1).float()
        stroke_start = torch.nonzero(starts).squeeze(1)
        stroke_len = torch.cat([stroke_start[1:], torch.full_like(stroke_start[:1], n)]) - stroke_start  # no ONNX diff
        index = torch.arange(n, device=points.device) - stroke_start[stroke]
        point_order = 1.0 - index.float() / (stroke_len[stroke] - 1).clamp(min=1).float()
        return torch.stack([stroke_order, point_order], dim=1)


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
        self.has_attention = self.intensity.startswith("attention")
        self.channels = model.encoder.channels if self.has_attention else model.in_channels
        self.encoder = model.encoder if self.has_attention else None
        rasterizer = DenseRasterizer(model.raster_size, model.raster_eps, model.overlap)
        order, time = SketchingOrder(), TimeEncoding()
        if scripted:
            import warnings

            with warnings.catch_warnings():  # torch.jit.script's deprecation notice (see r2cnn.export docstring)
                warnings.simplefilter("ignore", FutureWarning)
                rasterizer, order, time = torch.jit.script(rasterizer), torch.jit.script(order), torch.jit.script(time)
        self.rasterizer = rasterizer
        self.order = order
        self.time = time
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
        # the channel order of CNNOnly.intensities and AttentionTimeEncoded.forward_with_attention
        if self.intensity in ("time", "attention-replace"):
            intensities = torch.cat([intensities, self.time(points)], 1)
        elif self.intensity == "attention-next":
            intensities = torch.cat([intensities, ones, self.time(points)], 1)
        elif self.intensity == "attention-gated":
            intensities = torch.cat([intensities, self.time(points) * attention[:, None]], 1)
        image = self.rasterizer(points, intensities)
        return self.cnn(image), attention
