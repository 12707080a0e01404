"""The model registry's names and specs (kind, backbone, description, default options, data requirements), without
torch: :mod:`r2cnn.presets` and ``r2cnn presets`` read them in a fraction of a second, and :mod:`r2cnn.models`
builds the networks from them (``r2cnn.models.create``; the names are listed in that module's docstring).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from r2cnn.errors import R2CNNError

DEFAULT_OPTIONS = dict(canvas=224, eps=1.0, overlap="last", hidden=512, layers=2, dropout=0.5, width=64,
                       stem="imagenet", pretrained=None, cnn_dropout=0.5, fusion_eps=0.5,
                       fixed_dropout=0.0)

KINDS = ("cnn", "stroke-thirds", "order", "r2cnn", "attentive", "late-fusion", "early-fusion", "time", "attention-time",
         "r2cnn-stroke", "attention-replaces-binary", "attention-gated-time", "r2cnn-contrast")


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
for _arch, _label in (("resnet18", "ResNet18"), ("resnet50", "ResNet50")):
    register(f"time-encoded-{_arch}", ModelSpec("time", _arch, f"{_label} on the time-encoded image: binary, "
                                                "stroke order, point order (Kaggle style; not in the paper)"))
    register(f"attention-time-encoded-{_arch}", ModelSpec("attention-time", _arch, f"{_label} on R2CNN attention "
                                                          "next to the time-encoded image (not in the paper)"))
    register(f"r2cnn-stroke-{_arch}", ModelSpec("r2cnn-stroke", _arch, f"Sketch-R2CNN ({_label}) with stroke-level "
                                                "attention: one value per stroke (not in the paper)"))
    register(f"r2cnn-contrast-{_arch}", ModelSpec("r2cnn-contrast", _arch, f"Sketch-R2CNN ({_label}) with its "
                                                  "attention standardised within each sketch (not in the paper)"))
    register(f"attention-replaces-binary-{_arch}", ModelSpec(
        "attention-replaces-binary", _arch, f"{_label} on the time-encoded image whose binary channel is R2CNN's "
        "attention (not in the paper)"))
    register(f"attention-gated-time-{_arch}", ModelSpec(
        "attention-gated-time", _arch, f"{_label} on R2CNN's attention and the order channels multiplied by it "
        "(not in the paper)"))
# Table 2's designs: the paper's names (ResNet50), and ResNet18 twins named with the backbone as a suffix.
_TABLE2 = [  # (name, kind, description with {arch} for the backbone, transform requirements)
    ("attentive", "attentive", "{arch} + Song et al. spatial attention after C2 (Table 2)", {}),
    ("random-stroke-order", "r2cnn", "Sketch-R2CNN ({arch}) on randomly ordered strokes (Table 2)",
     {"stroke_order": "random"}),
    ("attention-sketching-order", "order", "{arch} on rasters whose intensity falls from 1 (first point) to 0 (last) "
                                           "(Table 2)", {}),
    ("two-branch-late-fusion", "late-fusion", "BiLSTM final states + {arch} features, concatenated, FC (Xu et al.; "
                                              "Tables 2, 3)", {}),
    ("two-branch-early-fusion", "early-fusion", "RNN attention (eps 0.5, at C2 resolution) multiplies {arch}'s C2 "
                                                "output; CNN on binary images (Table 2)", {}),
]
for _design, _kind, _text, _needs in _TABLE2:
    for _arch, _label in (("resnet50", "ResNet50"), ("resnet18", "ResNet18")):
        _name = f"{_design}-{_arch}" if _design == "attentive" or _arch != "resnet50" else _design
        register(_name, ModelSpec(_kind, _arch, _text.format(arch=_label), transform_requirements=_needs))


def list_models() -> list[str]:
    """Registered names (``cnn-<arch>`` and ``r2cnn-<arch>`` also accept any torchvision model name)."""
    return sorted(_REGISTRY)


def torchvision_archs() -> list[str]:
    """torchvision's classification model names (imports torchvision: only asked for names outside the registry)."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def get_spec(name: str) -> ModelSpec:
    if name in _REGISTRY:
        return _REGISTRY[name]
    kind, _, arch = name.partition("-")
    if kind in ("cnn", "r2cnn") and arch in torchvision_archs():
        return ModelSpec(kind, arch, f"{'Sketch-R2CNN' if kind == 'r2cnn' else 'CNN-only'} with torchvision {arch}")
    raise R2CNNError(f"unknown model {name!r}; known: {', '.join(list_models())} "
                     "(or cnn-<torchvision model>, r2cnn-<torchvision model>)")
