"""Model registry (as timm's ``create_model``): ``create(name, num_classes, in_channels=1, **options)``.

Names cover every row of the paper's tables (Sketch-R2CNN, Li et al. 2020):

- Table 1/3 CNN-only baselines: ``cnn-sketchanet`` (Sketch-a-Net v2, 225 canvas), ``cnn-resnet50`` (224),
  ``cnn-resnet18``, ``cnn-resnet34``; and ``cnn-<arch>`` for any torchvision model name.
- Table 1/3 Sketch-R2CNN: ``r2cnn-sketchanet``, ``r2cnn-resnet50``, ``r2cnn-resnet18``, ``r2cnn-resnet34``;
  ``r2cnn-<arch>`` for any torchvision model.
- Table 1 early deep baselines: ``cnn-lenet`` (LeNet, 32) and ``cnn-alexnet`` (AlexNet-Sketch, 224), backbones
  in :mod:`r2cnn.models.backbones`; ``cnn-sketchanet-v1`` (Sketch-a-Net v1: six stroke-order channels, 225,
  :mod:`r2cnn.models.stroke_thirds`).
- Table 2 alternatives (ResNet50, 224): ``attentive-resnet50``, ``random-stroke-order`` (R2CNN-ResNet50 whose
  data must use ``stroke_order="random"``: see ``model.transform_requirements``), ``attention-sketching-order``,
  ``two-branch-late-fusion``, ``two-branch-early-fusion``; the same designs on a ResNet18 backbone
  (for the CPU twins of Table 2) as ``attentive-<arch>`` and ``<design>-<arch>``, e.g.
  ``two-branch-late-fusion-resnet18``.
- Beyond the paper: ``time-encoded-<arch>``, the Kaggle-style time-encoded image (binary, stroke-order and
  point-order channels: C + 2 CNN inputs), and ``attention-time-encoded-<arch>``, R2CNN whose CNN sees its C
  attention channels next to those three fixed channels (C + 3 inputs); ``<arch>`` is ``resnet18`` or ``resnet50``.
- The attention designs (docs/experiments.md; still Sketch-R2CNN: RNN -> NLR -> CNN, end to end; ``<arch>`` as above):
  ``r2cnn-stroke-<arch>`` (stroke-level attention: one value per stroke, :class:`StrokeAttentionEncoder`),
  ``r2cnn-contrast-<arch>`` (the attention standardised within each sketch, :class:`ContrastAttentionEncoder`),
  ``attention-replaces-binary-<arch>`` (the time-encoded image whose binary channel is the C attention channels:
  C + 2 inputs) and ``attention-gated-time-<arch>`` (the attention next to the two order channels multiplied by
  it: C + 2 inputs); see :class:`AttentionTimeEncoded`.

``options`` (all optional; encoder options are ignored by models without an RNN, so one option set can build an
R2CNN and its CNN-only twin):

- raster: ``canvas`` (pixels, default 224, 225 for Sketch-a-Net), ``eps`` (stroke half-width in pixels, paper 1.0),
  ``overlap`` ("last" or "max");
- encoder (Sec. 3.2): ``hidden`` (512), ``layers`` (2), ``dropout`` (0.5);
- backbone: ``width`` (ResNet first-stage channels, 64), ``stem`` ("imagenet" or "small"), ``pretrained`` (path
  to torchvision-format weights, or torchvision weights by name from torch's hub cache: "IMAGENET1K_V1",
  "IMAGENET1K_V2", ``True``/"imagenet" for torchvision's default; never downloaded),
  ``cnn_dropout`` (Sketch-a-Net L6/L7 dropout, 0.5);
- early fusion: ``fusion_eps`` (0.5);
- the time-encoded kinds: ``fixed_dropout`` (0.0), the probability that a training sketch's fixed channels are
  drawn as zeros (modality dropout; evaluation always draws them): with the attention, the binary and order
  channels, so that the CNN must classify the sketch from the attention alone; on the time-encoded image, its two
  order channels (the control: the sketch is then the binary image); ignored by the other models.

``in_channels`` is C, the number of attention channels of the RNN and input channels of the CNN (paper: 1).
Every model has ``raster_size``, ``raster_eps``, ``forward(batch) -> logits`` and
``forward_with_attention(batch) -> dict(logits, attention, image)``, plus ``config`` (the arguments that rebuild
it with ``create(**model.config)``) and ``transform_requirements`` (``make_transform`` kwargs the model needs).
"""

from __future__ import annotations

import math

from r2cnn.errors import R2CNNError, did_you_mean
from r2cnn.model_specs import DEFAULT_OPTIONS, KINDS, ModelSpec, get_spec, list_models, register
from r2cnn.models.backbones import LeNet, ResNetBackbone, SketchANet, create_backbone
from r2cnn.models.encoder import (AttentionEncoder, BiLSTM, ContrastAttentionEncoder, PackedLayout, SequenceEncoder,
                                  StrokeAttentionEncoder, point_offsets, stroke_index)
from r2cnn.models.r2cnn import (AttentionTimeEncoded, AttentiveCNN, CNNOnly, EarlyFusion, LateFusion, R2CNN,
                                SketchClassifier, sketching_order_intensities, time_encoding_intensities)
from r2cnn.models.stroke_thirds import STROKE_THIRDS_CHANNELS, StrokeThirdsCNN

# attention + time-encoded kinds -> AttentionTimeEncoded's ``fixed``
_ATTENTION_TIME = {"attention-time": "next", "attention-replaces-binary": "replace", "attention-gated-time": "gated"}
# CNN inputs beyond the C channels (see the module docstring)
_EXTRA_CHANNELS = {"time": 2, **{k: AttentionTimeEncoded.EXTRA_CHANNELS[v] for k, v in _ATTENTION_TIME.items()}}


def _count(minimum: int, maximum: int):
    return ((lambda v: isinstance(v, int) and not isinstance(v, bool) and minimum <= v <= maximum),
            f"an integer from {minimum} to {maximum}")


def _number(test, what: str):
    return (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and test(v)), what


# option -> (test, what it must be). 16 pixels is the smallest canvas on which a sketch is still a drawing. The
# upper bounds are far above any preset (canvas 225, hidden 512, width 64) and keep a typo or a crafted checkpoint
# from asking for terabytes (a 100000-pixel canvas) before anything can say why.
_OPTION_RULES = {
    "canvas": _count(16, 1024),
    "eps": _number(lambda v: 0 < v <= 64, "a number in (0, 64] (pixels)"),
    "overlap": ((lambda v: v in ("last", "max")), "'last' or 'max'"),
    "hidden": _count(1, 4096),
    "layers": _count(1, 16),
    "dropout": _number(lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "width": _count(1, 512),
    "stem": ((lambda v: isinstance(v, str)), "a stem name"),
    "pretrained": ((lambda v: v is None or isinstance(v, (bool, str))), "null, true, a weights name or a path"),
    "cnn_dropout": _number(lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "fusion_eps": _number(lambda v: 0 < v <= 64, "a number in (0, 64] (pixels)"),
    "fixed_dropout": _number(lambda v: 0 <= v < 1, "a probability in [0, 1)"),
}


def check_options(options: dict) -> None:
    """A one-line error naming the first model option of the wrong type or range."""
    for key, (ok, what) in _OPTION_RULES.items():
        if not ok(options[key]):
            raise R2CNNError(f"model option {key} must be {what}, not {options[key]!r}")


def create(name: str, num_classes: int, in_channels: int = 1, **options) -> SketchClassifier:
    """Build the model ``name`` for ``num_classes`` classes with C = ``in_channels`` (module docstring lists the
    options). Raises :class:`R2CNNError` for an unknown name or option, or weights that are not available."""
    spec = get_spec(name)
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise R2CNNError(f"unknown model option(s) {', '.join(unknown)}{did_you_mean(unknown[0], DEFAULT_OPTIONS)}; "
                         f"known: {', '.join(DEFAULT_OPTIONS)}")
    if num_classes < 1 or in_channels < 1:
        raise R2CNNError(f"num_classes and in_channels must be >= 1, got {num_classes} and {in_channels}")
    o = {**DEFAULT_OPTIONS, **spec.defaults, **options}
    check_options(o)
    raster = dict(raster_size=int(o["canvas"]), raster_eps=float(o["eps"]), overlap=o["overlap"])
    if o["overlap"] not in ("last", "max"):
        raise R2CNNError(f"overlap must be 'last' or 'max', not {o['overlap']!r}")
    cnn_channels = STROKE_THIRDS_CHANNELS if spec.kind == "stroke-thirds" else in_channels + _EXTRA_CHANNELS.get(spec.kind, 0)
    backbone = create_backbone(spec.backbone, cnn_channels, width=int(o["width"]), stem=o["stem"],
                               pretrained=o["pretrained"], dropout=float(o["cnn_dropout"]))
    if isinstance(backbone, SketchANet):
        backbone.check_size((raster["raster_size"],) * 2)
    if spec.kind in ("attentive", "early-fusion") and not isinstance(backbone, ResNetBackbone):
        raise R2CNNError(f"{name} needs a ResNet backbone (it acts on the C2 block)")

    rnn = (int(o["hidden"]), int(o["layers"]), float(o["dropout"]))  # Sec. 3.2: 512, 2, 0.5

    if spec.kind == "cnn":
        model = CNNOnly(backbone, num_classes, in_channels, "constant", **raster)
    elif spec.kind == "stroke-thirds":
        model = StrokeThirdsCNN(backbone, num_classes, **raster)
    elif spec.kind == "order":
        model = CNNOnly(backbone, num_classes, in_channels, "order", **raster)
    elif spec.kind == "time":
        model = CNNOnly(backbone, num_classes, in_channels, "time", float(o["fixed_dropout"]), **raster)
    elif spec.kind == "r2cnn":
        model = R2CNN(AttentionEncoder(*rnn, in_channels), backbone, num_classes, **raster)
    elif spec.kind == "r2cnn-stroke":
        model = R2CNN(StrokeAttentionEncoder(*rnn, in_channels), backbone, num_classes, **raster)
    elif spec.kind == "r2cnn-contrast":
        model = R2CNN(ContrastAttentionEncoder(*rnn, in_channels), backbone, num_classes, **raster)
    elif spec.kind in _ATTENTION_TIME:
        model = AttentionTimeEncoded(AttentionEncoder(*rnn, in_channels), backbone, num_classes,
                                     _ATTENTION_TIME[spec.kind], fixed_dropout=float(o["fixed_dropout"]), **raster)
    elif spec.kind == "attentive":
        model = AttentiveCNN(backbone, num_classes, in_channels, **raster)
    elif spec.kind == "late-fusion":
        model = LateFusion(SequenceEncoder(*rnn), backbone, num_classes, in_channels, **raster)
    else:
        model = EarlyFusion(AttentionEncoder(*rnn, 1), backbone, num_classes, in_channels, float(o["fusion_eps"]),
                            **raster)
    model.config = dict(name=name, num_classes=num_classes, in_channels=in_channels, **options)
    model.transform_requirements = dict(spec.transform_requirements)
    return model


__all__ = ["AttentionEncoder", "AttentionTimeEncoded", "AttentiveCNN", "BiLSTM", "CNNOnly", "ContrastAttentionEncoder", "DEFAULT_OPTIONS",
           "EarlyFusion", "LateFusion", "LeNet", "ModelSpec", "PackedLayout", "R2CNN", "ResNetBackbone",
           "SequenceEncoder", "SketchANet", "SketchClassifier", "StrokeAttentionEncoder", "StrokeThirdsCNN",
           "create", "create_backbone", "get_spec", "list_models", "point_offsets", "register",
           "sketching_order_intensities", "stroke_index", "time_encoding_intensities"]
