"""Model registry (as timm's ``create_model``): ``create(name, num_classes, in_channels=1, **options)``.

Names cover every row of the paper's tables (Sketch-R2CNN, Li et al. 2020):

- Table 1/3 CNN-only baselines: ``cnn-sketchanet`` (Sketch-a-Net v2, 225 canvas), ``cnn-resnet50`` (224),
  ``cnn-resnet18``, ``cnn-resnet34``; and ``cnn-<arch>`` for any torchvision model name.
- Table 1/3 Sketch-R2CNN: ``r2cnn-sketchanet``, ``r2cnn-resnet50``, ``r2cnn-resnet18``, ``r2cnn-resnet34``;
  ``r2cnn-<arch>`` for any torchvision model.
- Table 1 early deep baselines (:mod:`r2cnn.models.early`): ``cnn-lenet`` (LeNet, 32), ``cnn-alexnet``
  (AlexNet-Sketch, 224), ``cnn-sketchanet-v1`` (Sketch-a-Net v1: six stroke-order channels, 225).
- Table 2 alternatives (ResNet50, 224): ``attentive-resnet50``, ``random-stroke-order`` (R2CNN-ResNet50 whose
  data must use ``stroke_order="random"``: see ``model.transform_requirements``), ``attention-sketching-order``,
  ``two-branch-late-fusion``, ``two-branch-early-fusion``.

``options`` (all optional; encoder options are ignored by models without an RNN, so one option set can build an
R2CNN and its CNN-only twin):

- raster: ``canvas`` (pixels, default 224, 225 for Sketch-a-Net), ``eps`` (stroke half-width in pixels, paper 1.0),
  ``overlap`` ("last" or "max");
- encoder (Sec. 3.2): ``hidden`` (512), ``layers`` (2), ``dropout`` (0.5);
- backbone: ``width`` (ResNet first-stage channels, 64), ``stem`` ("imagenet" or "small"), ``pretrained`` (path
  to torchvision-format weights, or ``True``/"imagenet" for torch's hub cache; never downloaded),
  ``cnn_dropout`` (Sketch-a-Net L6/L7 dropout, 0.5);
- early fusion: ``fusion_eps`` (0.5).

``in_channels`` is C, the number of attention channels of the RNN and input channels of the CNN (paper: 1).
Every model has ``raster_size``, ``raster_eps``, ``forward(batch) -> logits`` and
``forward_with_attention(batch) -> dict(logits, attention, image)``, plus ``config`` (the arguments that rebuild
it with ``create(**model.config)``) and ``transform_requirements`` (``make_transform`` kwargs the model needs).
"""

from __future__ import annotations

from dataclasses import dataclass, field


from r2cnn.errors import R2CNNError
from r2cnn.models.backbones import ResNetBackbone, SketchANet, create_backbone, torchvision_archs
from r2cnn.models.early import STROKE_THIRDS_CHANNELS, LeNet, StrokeThirdsCNN
from r2cnn.models.encoder import AttentionEncoder, BiLSTM, PackedLayout, SequenceEncoder, point_offsets
from r2cnn.models.r2cnn import (CNNOnly, EarlyFusion, LateFusion, R2CNN, AttentiveCNN, SketchClassifier,
                                sketching_order_intensities)

DEFAULT_OPTIONS = dict(canvas=224, eps=1.0, overlap="last", hidden=512, layers=2, dropout=0.5, width=64,
                       stem="imagenet", pretrained=None, cnn_dropout=0.5, fusion_eps=0.5)

KINDS = ("cnn", "stroke-thirds", "order", "r2cnn", "attentive", "late-fusion", "early-fusion")


@dataclass(frozen=True)
class ModelSpec:
    kind: str
    backbone: str
    description: str
    defaults: dict = field(default_factory=dict)
    transform_requirements: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, spec: ModelSpec) -> None:
    if spec.kind not in KINDS:
        raise ValueError(f"unknown model kind {spec.kind!r}")
    _REGISTRY[name] = spec


def _canvas_for(backbone: str) -> dict:
    return {"canvas": 225} if backbone == "sketchanet" else {"canvas": 32} if backbone == "lenet" else {}


for _arch, _label in (("sketchanet", "Sketch-a-Net v2"), ("resnet18", "ResNet18"), ("resnet34", "ResNet34"),
                      ("resnet50", "ResNet50")):
    register(f"cnn-{_arch}", ModelSpec("cnn", _arch, f"{_label} on binary rasters (Tables 1, 3)", _canvas_for(_arch)))
    register(f"r2cnn-{_arch}", ModelSpec("r2cnn", _arch, f"Sketch-R2CNN ({_label}) (Tables 1, 3)", _canvas_for(_arch)))
register("cnn-lenet", ModelSpec("cnn", "lenet", "LeNet (LeCun et al. 1998) on binary rasters (Table 1)",
                                 _canvas_for("lenet")))
register("cnn-alexnet", ModelSpec("cnn", "alexnet", "AlexNet-Sketch: AlexNet trained on binary rasters (Table 1)"))
register("cnn-sketchanet-v1", ModelSpec("stroke-thirds", "sketchanet", "Sketch-a-Net v1 (Yu et al. 2015): six "
                                        "stroke-order channels, one scale (Table 1)", _canvas_for("sketchanet")))
register("attentive-resnet50", ModelSpec("attentive", "resnet50",
                                         "ResNet50 + Song et al. spatial attention after C2 (Table 2)"))
register("random-stroke-order", ModelSpec("r2cnn", "resnet50", "Sketch-R2CNN (ResNet50) on randomly ordered strokes "
                                          "(Table 2)", transform_requirements={"stroke_order": "random"}))
register("attention-sketching-order", ModelSpec("order", "resnet50", "ResNet50 on rasters whose intensity falls from "
                                                "1 (first point) to 0 (last) (Table 2)"))
register("two-branch-late-fusion", ModelSpec("late-fusion", "resnet50", "BiLSTM final states + ResNet50 features, "
                                             "concatenated, FC (Xu et al.; Tables 2, 3)"))
register("two-branch-early-fusion", ModelSpec("early-fusion", "resnet50", "RNN attention (56x56, eps 0.5) multiplies "
                                              "ResNet50's C2 output; CNN on binary images (Table 2)"))


def list_models() -> list[str]:
    """Registered names (``cnn-<arch>`` and ``r2cnn-<arch>`` also accept any torchvision model name)."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    if name in _REGISTRY:
        return _REGISTRY[name]
    kind, _, arch = name.partition("-")
    if kind in ("cnn", "r2cnn") and arch in torchvision_archs():
        return ModelSpec(kind, arch, f"{'Sketch-R2CNN' if kind == 'r2cnn' else 'CNN-only'} with torchvision {arch}")
    raise R2CNNError(f"unknown model {name!r}; known: {', '.join(list_models())} "
                     "(or cnn-<torchvision model>, r2cnn-<torchvision model>)")


def create(name: str, num_classes: int, in_channels: int = 1, **options) -> SketchClassifier:
    """Build the model ``name`` for ``num_classes`` classes with C = ``in_channels`` (module docstring lists the
    options). Raises :class:`R2CNNError` for an unknown name or option, or weights that are not available."""
    spec = get_spec(name)
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise R2CNNError(f"unknown model option(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_OPTIONS)}")
    if num_classes < 1 or in_channels < 1:
        raise R2CNNError(f"num_classes and in_channels must be >= 1, got {num_classes} and {in_channels}")
    o = {**DEFAULT_OPTIONS, **spec.defaults, **options}
    raster = dict(raster_size=int(o["canvas"]), raster_eps=float(o["eps"]), overlap=o["overlap"])
    if o["overlap"] not in ("last", "max"):
        raise R2CNNError(f"overlap must be 'last' or 'max', not {o['overlap']!r}")
    cnn_channels = STROKE_THIRDS_CHANNELS if spec.kind == "stroke-thirds" else in_channels
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
    elif spec.kind == "r2cnn":
        model = R2CNN(AttentionEncoder(*rnn, in_channels), backbone, num_classes, **raster)
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


__all__ = ["AttentionEncoder", "AttentiveCNN", "BiLSTM", "CNNOnly", "DEFAULT_OPTIONS", "EarlyFusion", "LateFusion", "LeNet",
           "ModelSpec", "PackedLayout", "R2CNN", "ResNetBackbone", "SequenceEncoder", "SketchANet", "SketchClassifier", "StrokeThirdsCNN",
           "create", "create_backbone", "get_spec", "list_models", "point_offsets", "register",
           "sketching_order_intensities"]
