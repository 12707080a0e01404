"""Sketch classifiers: Sketch-R2CNN (paper Fig. 1), the CNN-only baselines (Tables 1 and 3) and the design
alternatives of Table 2. Every model maps a :class:`~r2cnn.sketch.SketchBatch` of normalised sketches to logits.

All of them draw their input with the same neural line rasteriser (:mod:`r2cnn.raster`, Sec. 3.3), so a CNN-only
model sees exactly the pixels R2CNN sees, with constant intensity 1 instead of the learned attention. The raster
geometry (which segment covers which pixel) does not depend on anything learned: the data loader computes it for
``(model.raster_size, model.raster_eps)`` and the model only renders; without it the model computes it here.
"""

from __future__ import annotations

import torch
from torch import nn

from r2cnn.models.backbones import ResNetBackbone
from r2cnn.models.encoder import AttentionEncoder, SequenceEncoder, stroke_index
from r2cnn.sketch import SketchBatch


class SketchClassifier(nn.Module):
    """Base class: a canvas of ``raster_size`` x ``raster_size`` pixels, stroke half-width ``raster_eps`` pixels
    (paper: 1.0) and the NLR overlap rule. Subclasses implement :meth:`forward_with_attention`."""

    def __init__(self, raster_size: int, raster_eps: float = 1.0, overlap: str = "last"):
        super().__init__()
        self.raster_size = int(raster_size)
        self.raster_eps = float(raster_eps)
        self.overlap = overlap

    def geometry(self, batch: SketchBatch, size: int | None = None, eps: float | None = None):
        """The batch's precomputed geometry when it was made for this canvas, else a fresh one."""
        from r2cnn import raster

        size = self.raster_size if size is None else size
        eps = self.raster_eps if eps is None else eps
        geo = batch.geometry
        if geo is not None and _geometry_matches(geo, batch.points.shape[0], size, eps, self.overlap):
            return geo
        return raster.geometry(batch.points, batch.offsets, size, eps, overlap=self.overlap)

    def render(self, batch: SketchBatch, intensities: torch.Tensor, size: int | None = None,
               eps: float | None = None) -> torch.Tensor:
        """NLR, eq. (1): per-point ``intensities`` ``(P, C)`` -> images ``(B, C, H, W)``; gradients by eq. (3).
        Rendered in float32 whatever autocast made of the intensities (the NLR is a gather: precision is free)."""
        from r2cnn import raster

        return raster.render(self.geometry(batch, size, eps), intensities.float())

    def get_classifier(self) -> nn.Module:
        """The final fully connected layer (timm's convention; replaced when fine-tuning to new classes)."""
        return self.classifier

    def forward(self, batch: SketchBatch) -> torch.Tensor:
        """``batch`` -> logits ``(B, K)``."""
        return self.forward_with_attention(batch)["logits"]

    def forward_with_attention(self, batch: SketchBatch) -> dict:
        """-> ``dict(logits (B, K), attention (P, C) or None, image (B, C, H, W))``: what the CNN saw."""
        raise NotImplementedError


def _geometry_matches(geo, num_points: int, size: int, eps: float, overlap: str) -> bool:
    return (geo.num_points == num_points and tuple(geo.size) == (size, size) and abs(geo.eps - eps) < 1e-9
            and geo.overlap == overlap)


def sketching_order_intensities(offsets: torch.Tensor, num_points: int) -> torch.Tensor:
    """Table 2, Attention-using-Sketching-Order: 1 at the first point of each sketch, 0 at the last, linear in
    the point index in between (a one-point sketch gets 1). -> ``(P,)``."""
    lengths = offsets[1:] - offsets[:-1]
    sketch = torch.repeat_interleave(torch.arange(lengths.numel(), device=offsets.device), lengths,
                                     output_size=num_points)
    index = torch.arange(num_points, device=offsets.device) - offsets[:-1][sketch]
    span = (lengths[sketch] - 1).clamp(min=1)
    return 1.0 - index.float() / span.float()


def time_encoding_intensities(points: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The Kaggle Quick, Draw! challenge's time-encoded image (not in the paper): two per-point channels, rendered
    next to the binary image. -> ``(P, 2)``:

    - stroke order: 1 on the sketch's first stroke falling linearly to 0 on its last (one stroke: 1);
    - point order: 1 at the first point of each stroke falling linearly to 0 at its last (a dot: 1), so the
      drawing direction of every stroke is visible, which the stroke channel does not show.

    ``points`` ``(P, 3)`` (pen_end in column 2 closes a stroke), ``offsets`` ``(B+1,)``.
    """
    num_points = points.shape[0]
    device = offsets.device
    lengths = offsets[1:] - offsets[:-1]
    stroke = stroke_index(points, offsets)  # global stroke index of every point
    starts = torch.ones(num_points, dtype=torch.bool, device=device)
    starts[1:] = stroke[1:] != stroke[:-1]
    sketch = torch.repeat_interleave(torch.arange(lengths.numel(), device=device), lengths, output_size=num_points)
    first_stroke = stroke[offsets[:-1].clamp(max=max(num_points - 1, 0))]
    last_stroke = stroke[(offsets[1:] - 1).clamp(min=0)]
    span = (last_stroke - first_stroke).clamp(min=1)[sketch]
    stroke_order = 1.0 - (stroke - first_stroke[sketch]).float() / span.float()
    stroke_start = torch.nonzero(starts).squeeze(1)
    stroke_len = torch.diff(torch.cat([stroke_start, stroke_start.new_tensor([num_points])]))
    index = torch.arange(num_points, device=device) - stroke_start[stroke]
    point_order = 1.0 - index.float() / (stroke_len[stroke] - 1).clamp(min=1).float()
    return torch.stack([stroke_order, point_order], dim=1)


def sketch_dropout_mask(batch: SketchBatch, p: float, like: torch.Tensor) -> torch.Tensor:
    """``(P, 1)`` in ``like``'s dtype: 0 on every point of a sketch dropped with probability ``p``, else 1 (one
    draw per sketch, from torch's generator)."""
    keep = (torch.rand(batch.batch_size, device=like.device) >= p).to(like.dtype)
    return keep.repeat_interleave(batch.lengths.to(like.device), output_size=like.shape[0]).unsqueeze(1)


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), not {p!r}")


class CNNOnly(SketchClassifier):
    """A CNN on rasterised sketches (Tables 1, 3: "Sketch-a-Net v2", "ResNet50").

    ``intensity="constant"``: every stroke pixel is 1 (the binary image the CNN-only baselines use);
    ``intensity="order"``: Table 2's Attention-using-Sketching-Order (:func:`sketching_order_intensities`);
    ``intensity="time"``: the binary image plus the two :func:`time_encoding_intensities` channels (the CNN
    then has ``in_channels + 2`` inputs).
    The value (binary or order) is repeated over the ``in_channels`` channels.
    ``fixed_dropout`` (``"time"`` only): in training, each sketch's two order channels are drawn as zeros with this
    probability (the control of :class:`AttentionTimeEncoded`'s option: a dropped sketch is the binary image)."""

    def __init__(self, backbone: nn.Module, num_classes: int, in_channels: int = 1, intensity: str = "constant",
                 fixed_dropout: float = 0.0, **raster):
        super().__init__(**raster)
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.out_features, num_classes)
        self.in_channels = in_channels
        self.intensity = intensity
        _check_probability("fixed_dropout", fixed_dropout)
        if fixed_dropout and intensity != "time":
            raise ValueError("fixed_dropout needs the time-encoded channels (intensity='time')")
        self.fixed_dropout = fixed_dropout

    def intensities(self, batch: SketchBatch) -> torch.Tensor:
        p = batch.points.shape[0]
        if self.intensity == "order":
            value = sketching_order_intensities(batch.offsets, p).to(batch.points.dtype)
        else:
            value = batch.points.new_ones(p)
        value = value[:, None].expand(p, self.in_channels)
        if self.intensity == "time":
            order = time_encoding_intensities(batch.points, batch.offsets).to(value.dtype)
            if self.training and self.fixed_dropout:
                order = order * sketch_dropout_mask(batch, self.fixed_dropout, order)
            value = torch.cat([value, order], 1)
        return value

    def forward_with_attention(self, batch: SketchBatch) -> dict:
        image = self.render(batch, self.intensities(batch))
        return dict(logits=self.classifier(self.backbone(image)), attention=None, image=image)


class R2CNN(SketchClassifier):
    """Sketch-R2CNN (Fig. 1): attention encoder (BiLSTM -> FC -> sigmoid, Sec. 3.2) -> NLR (Sec. 3.3) -> CNN
    backbone -> fully connected classifier, trained end to end with cross entropy. The encoder's C attention
    channels are the CNN's input channels."""

    def __init__(self, encoder: AttentionEncoder, backbone: nn.Module, num_classes: int, **raster):
        super().__init__(**raster)
        self.encoder = encoder
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.out_features, num_classes)

    def forward_with_attention(self, batch: SketchBatch) -> dict:
        attention = self.encoder(batch)
        image = self.render(batch, attention)
        return dict(logits=self.classifier(self.backbone(image)), attention=attention, image=image)


class AttentionTimeEncoded(R2CNN):
    """Beyond the paper: R2CNN whose CNN sees the C learned attention channels together with the fixed
    time-encoded channels (stroke order, point order; :func:`time_encoding_intensities`). ``fixed``:

    - ``"next"``: next to the whole time-encoded image, binary channel included (C + 3 inputs);
    - ``"replace"``: the attention replaces the binary channel (C + 2 inputs): the time-encoded image whose
      constant channel is learned, so the RNN can only add to what the fixed encoding gives (a constant attention
      is that image) and the CNN cannot fall back on a binary copy of the strokes;
    - ``"gated"``: the two order channels are multiplied by the attention (its mean over the C channels; C + 2
      inputs), so every input pixel passes through the RNN and its gradient reaches the RNN from all channels.

    ``fixed_dropout``: in training, each sketch's fixed channels (all but the attention: binary and order, or the
    order channels alone) are drawn as zeros with this probability, so that for those sketches the CNN sees the
    attention alone and its loss reaches the RNN (modality dropout; no rescaling, since the channels are
    intensities). In evaluation every channel is drawn.
    """

    EXTRA_CHANNELS = {"next": 3, "replace": 2, "gated": 2}

    def __init__(self, encoder: AttentionEncoder, backbone: nn.Module, num_classes: int, fixed: str = "next",
                 fixed_dropout: float = 0.0, **raster):
        super().__init__(encoder, backbone, num_classes, **raster)
        if fixed not in self.EXTRA_CHANNELS:
            raise ValueError(f"fixed must be one of {', '.join(self.EXTRA_CHANNELS)}, not {fixed!r}")
        _check_probability("fixed_dropout", fixed_dropout)
        self.fixed = fixed
        self.fixed_dropout = fixed_dropout

    def forward_with_attention(self, batch: SketchBatch) -> dict:
        attention = self.encoder(batch)
        order = time_encoding_intensities(batch.points, batch.offsets).to(attention.dtype)
        if self.fixed == "next":
            fixed = torch.cat([attention.new_ones(order.shape[0], 1), order], 1)
        elif self.fixed == "replace":
            fixed = order
        else:
            fixed = order * attention.mean(dim=1, keepdim=True)
        if self.training and self.fixed_dropout:
            fixed = fixed * sketch_dropout_mask(batch, self.fixed_dropout, fixed)
        channels = [attention, fixed]
        image = self.render(batch, torch.cat(channels, 1))
        return dict(logits=self.classifier(self.backbone(image)), attention=attention, image=image)


class SpatialAttention(nn.Module):
    """Song et al. 2017 ("Deep spatial-semantic attention for fine-grained sketch-based image retrieval"):
    two 1x1 convolutions give one score per location, a softmax over the locations gives the mask ``m``, and the
    features become ``f + f * m`` (the residual keeps the features where the mask is small)."""

    def __init__(self, channels: int):
        super().__init__()
        self.score = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True), nn.Conv2d(channels, 1, 1))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = features.shape
        mask = torch.softmax(self.score(features).view(b, -1), dim=1).view(b, 1, h, w)
        return features + features * mask, mask


class AttentiveCNN(SketchClassifier):
    """Table 2, Attentive-ResNet50: a ResNet on binary images with :class:`SpatialAttention` after the C2 block
    (layer1; 56x56 for a 224 canvas). ``forward_with_attention`` also returns the mask as ``feature_attention``."""

    def __init__(self, backbone: ResNetBackbone, num_classes: int, in_channels: int = 1, **raster):
        super().__init__(**raster)
        self.backbone = backbone
        self.attention = SpatialAttention(backbone.c2_channels)
        self.classifier = nn.Linear(backbone.out_features, num_classes)
        self.in_channels = in_channels

    def forward_with_attention(self, batch: SketchBatch) -> dict:
        p = batch.points.shape[0]
        image = self.render(batch, batch.points.new_ones(p, self.in_channels))
        features, mask = self.attention(self.backbone.c2(image))
        logits = self.classifier(self.backbone.head(features))
        return dict(logits=logits, attention=None, image=image, feature_attention=mask)


class LateFusion(SketchClassifier):
    """Table 2/3, Two-Branch-Late-Fusion (Xu et al.): the RNN branch's final hidden states (both directions of
    the top layer, ``(B, 2H)``) concatenated with the CNN branch's global features of the binary image, then one
    fully connected layer. Same RNN cell and CNN backbone as R2CNN."""

    def __init__(self, encoder: SequenceEncoder, backbone: nn.Module, num_classes: int, in_channels: int = 1,
                 **raster):
        super().__init__(**raster)
        self.encoder = encoder
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.out_features + encoder.output_size, num_classes)
        self.in_channels = in_channels

    def forward_with_attention(self, batch: SketchBatch) -> dict:
        p = batch.points.shape[0]
        image = self.render(batch, batch.points.new_ones(p, self.in_channels))
        _, sequence = self.encoder(batch)
        logits = self.classifier(torch.cat([self.backbone(image), sequence], dim=1))
        return dict(logits=logits, attention=None, image=image)


class EarlyFusion(SketchClassifier):
    """Table 2, Two-Branch-Early-Fusion: the CNN takes the binary image; the RNN's attention is rasterised at the
    resolution of the C2 block (56x56 for a 224 canvas) with stroke half-width ``fusion_eps`` (paper: 0.5) and
    multiplies the C2 features (zero off the strokes, which the paper blames for its lower accuracy).
    ``forward_with_attention`` also returns that map as ``attention_map``."""

    def __init__(self, encoder: AttentionEncoder, backbone: ResNetBackbone, num_classes: int, in_channels: int = 1,
                 fusion_eps: float = 0.5, **raster):
        super().__init__(**raster)
        self.encoder = encoder
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.out_features, num_classes)
        self.in_channels = in_channels
        self.fusion_eps = float(fusion_eps)

    def forward_with_attention(self, batch: SketchBatch) -> dict:
        p = batch.points.shape[0]
        image = self.render(batch, batch.points.new_ones(p, self.in_channels))
        c2 = self.backbone.c2(image)
        attention = self.encoder(batch)
        attention_map = self.render(batch, attention, size=c2.shape[-1], eps=self.fusion_eps)
        logits = self.classifier(self.backbone.head(c2 * attention_map))
        return dict(logits=logits, attention=attention, image=image, attention_map=attention_map)
