"""CNN backbones: images ``(B, C, H, W)`` -> global features ``(B, D)`` (``backbone.out_features = D``).

- :class:`SketchANet`: Sketch-a-Net v2 (Yu et al., "Sketch-a-Net: A Deep Neural Network that Beats Humans",
  IJCV 2017), single-scale, C input channels (paper Table 1: "Sketch-a-Net v2 (ours)").
- :class:`ResNetBackbone`: any torchvision ResNet family model (resnet18/34/50/101/152, resnext*, wide_resnet*)
  with the first convolution adapted to C channels, an optional narrow width and a small-image stem (for the
  CPU preset), split into ``stem`` (conv1 .. layer1 = the paper's C2 block) and ``rest`` so that the Table 2
  ablations can act on the C2 output.
- :class:`TorchvisionBackbone`: any other torchvision classification model by name (first convolution adapted,
  classification head removed).

ImageNet weights are never downloaded: ``pretrained`` is a file path, or torchvision weights by name
(``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``; ``True``/``"imagenet"`` for torchvision's default) to use the file
torchvision would have cached for them under ``torch.hub.get_dir()/checkpoints/``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from r2cnn.errors import MissingResource, R2CNNError, describe_load_failure
from r2cnn.model_specs import torchvision_archs


class SketchANet(nn.Module):
    """Sketch-a-Net v2, Yu et al. 2017, Table 1 of their paper (spatial sizes for the 225x225 input):

    ======  ======================  =========  ==========
    layer   op                      channels   output
    ======  ======================  =========  ==========
    L1      conv 15x15 /3, ReLU      64        71x71
            maxpool 3x3 /2                     35x35
    L2      conv 5x5 /1, ReLU        128       31x31
            maxpool 3x3 /2                     15x15
    L3-L4   conv 3x3 /1 pad 1, ReLU  256       15x15
    L5      conv 3x3 /1 pad 1, ReLU  256       15x15
            maxpool 3x3 /2                     7x7
    L6      conv 7x7 ("fc"), ReLU    512       1x1   + dropout 0.5
    L7      conv 1x1 ("fc"), ReLU    512       1x1   + dropout 0.5
    L8      classifier                K        (the model's ``nn.Linear``)
    ======  ======================  =========  ==========

    Larger canvases give an L7 map bigger than 1x1, which is max-pooled to a vector; canvases smaller than
    ``min_size`` (222: L6 needs a 7x7 input) are refused.
    """

    min_size = 222

    def __init__(self, in_channels: int = 1, dropout: float = 0.5):
        super().__init__()
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        pool = lambda: nn.MaxPool2d(3, 2)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 15, stride=3), relu(), pool(),     # L1
            nn.Conv2d(64, 128, 5), relu(), pool(),                        # L2
            nn.Conv2d(128, 256, 3, padding=1), relu(),                    # L3
            nn.Conv2d(256, 256, 3, padding=1), relu(),                    # L4
            nn.Conv2d(256, 256, 3, padding=1), relu(), pool(),            # L5
            nn.Conv2d(256, 512, 7), relu(), nn.Dropout(dropout),          # L6
            nn.Conv2d(512, 512, 1), relu(), nn.Dropout(dropout),          # L7
        )
        self.out_features = 512

    def check_size(self, size: tuple[int, int]) -> None:
        if min(size) < self.min_size:
            raise R2CNNError(f"Sketch-a-Net v2 needs a canvas of at least {self.min_size} pixels (paper: 225), "
                             f"got {size[0]}x{size[1]}")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.amax(self.features(image), dim=(2, 3))


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the first ``nn.Conv2d`` for one with ``in_channels`` inputs (same kernel, stride, padding)."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels != in_channels:
                    setattr(parent, name, nn.Conv2d(in_channels, child.out_channels, child.kernel_size, child.stride,
                                                    child.padding, child.dilation, child.groups,
                                                    child.bias is not None, child.padding_mode))
                return
    raise R2CNNError(f"{type(model).__name__} has no convolution to adapt to {in_channels} input channels")


def _strip_head(model: nn.Module) -> int:
    """Replace the last ``nn.Linear`` of the classification head (``fc``, ``classifier`` or ``heads``) with an
    identity; returns its input size, the feature dimension."""
    for attr in ("fc", "classifier", "heads"):
        head = getattr(model, attr, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return head.in_features
        linears = [(n, m) for n, m in head.named_modules() if isinstance(m, nn.Linear)]
        if linears:
            name, last = linears[-1]
            parent = head.get_submodule(name.rpartition(".")[0]) if "." in name else head
            setattr(parent, name.rpartition(".")[2], nn.Identity())
            return last.in_features
    raise R2CNNError(f"cannot find the classification head of torchvision model {type(model).__name__}")


IMAGENET_INTENTS = (True, "imagenet", "DEFAULT")


def find_imagenet_weights(arch: str, weights: str = "DEFAULT") -> tuple[Path, str]:
    """The file of torchvision's ``weights`` for ``arch`` in torch's hub cache, and the weights' full name.

    ``weights`` is a name of the arch's torchvision weights enum (``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``, or
    ``"ResNet50_Weights.IMAGENET1K_V1"`` in full); ``"DEFAULT"`` is torchvision's own choice (for ResNet50 V2).
    The file is the one torchvision would have cached for exactly those weights (``<hub>/checkpoints/`` + the
    enum's URL file name, whose hash part tells V1 from V2); other files of the same arch are never taken.
    -> ``(path, "ResNet50_Weights.IMAGENET1K_V2")``.
    """
    try:
        enum = torchvision.models.get_model_weights(arch)
    except ValueError as e:
        raise R2CNNError(f"torchvision has no pretrained weights for {arch!r}") from e
    name = weights.rpartition(".")[2] if weights.startswith(f"{enum.__name__}.") else weights
    if name not in enum.__members__:
        raise R2CNNError(f"{arch} has no torchvision weights {weights!r}; known: {', '.join(enum.__members__)}")
    chosen = enum[name]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / Path(chosen.url).name
    if not path.is_file():
        others = [f"{Path(w.url).name} ({w.name})" for w in enum
                  if w != chosen and (folder / Path(w.url).name).is_file()]
        hint = f"; present: {', '.join(others)}, chosen by pretrained=NAME" if others else ""
        raise MissingResource(f"no ImageNet weights for {arch} ({enum.__name__}.{chosen.name}): {path} is missing "
                         f"(nothing is downloaded: put torchvision's file there, or pass pretrained=PATH; --set "
                         f"model_options.pretrained=null trains from scratch){hint}")
    return path, f"{enum.__name__}.{chosen.name}"


def _is_weights_name(pretrained) -> bool:
    """True/"imagenet"/"DEFAULT", or an enum name such as "IMAGENET1K_V1" (a path has a "/" or a file suffix)."""
    if pretrained in IMAGENET_INTENTS:
        return True
    return isinstance(pretrained, str) and "/" not in pretrained and not pretrained.endswith((".pth", ".pt")) \
        and pretrained.rpartition(".")[2].isupper()


def load_pretrained(model: nn.Module, pretrained, arch: str) -> str:
    """Load a torchvision-format state dict into ``model`` (whose head is already stripped); returns what was
    loaded, e.g. ``"ResNet50_Weights.IMAGENET1K_V2 (<hub>/checkpoints/resnet50-11ad3fa6.pth)"``.

    ``pretrained``: a path, or torchvision weights by name (:func:`find_imagenet_weights`; ``True`` and
    ``"imagenet"`` mean ``"DEFAULT"``). The first convolution's
    RGB kernels are summed and spread over the model's C input channels (``w.sum(1) / C`` per channel), so an
    image replicated over C channels gives the response ImageNet weights give to the same grey RGB image.
    Head weights in the file are ignored; any other missing or mismatched key is an error."""
    if _is_weights_name(pretrained):
        path, name = find_imagenet_weights(arch, "DEFAULT" if pretrained in IMAGENET_INTENTS else pretrained)
        source = f"{name} ({path})"
    else:
        path = Path(pretrained)
        source = str(path)
    if not path.is_file():
        raise R2CNNError(f"pretrained weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or non-PyTorch file is the user's input
        raise R2CNNError(f"{path}: cannot load weights: {describe_load_failure(e)}") from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = model.state_dict()
    first_conv = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)) + ".weight"
    if first_conv in state and state[first_conv].shape[1] != own[first_conv].shape[1]:
        c = own[first_conv].shape[1]
        w = state[first_conv].sum(dim=1, keepdim=True) / c
        state = dict(state, **{first_conv: w.expand(-1, c, -1, -1).contiguous()})
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    # the file's head (fc / classifier / heads) has no counterpart once the head is stripped
    unexpected = [k for k in unexpected if k.split(".")[0] not in ("fc", "classifier", "heads")]
    if missing or unexpected or mismatched:
        raise R2CNNError(f"{path}: weights do not fit {arch} (missing {missing[:3]}, unexpected {unexpected[:3]}, "
                         f"shape mismatch {mismatched[:3]})")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return source


RESNET_STEMS = ("imagenet", "small")


class ResNetBackbone(nn.Module):
    """A torchvision ResNet (``arch`` = resnet18/34/50/..., resnext*, wide_resnet*) as a feature extractor.

    - ``width``: channels of the first stage (64 in torchvision; stages double it). Narrow widths are for CPU.
    - ``stem``: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool: C2 = layer1 at 1/4 resolution, 56x56 for 224) or
      ``"small"`` (3x3/2 conv, no max-pool: layer1 at 1/2 resolution, for small canvases such as 64x64).
    - ``pretrained``: see :func:`load_pretrained` (only with the torchvision layout: width 64, imagenet stem).

    ``c2(image)`` -> layer1 output (the paper's C2 block, Table 2 ablations act there); ``head(c2)`` -> ``(B, D)``.
    """

    def __init__(self, arch: str = "resnet50", in_channels: int = 1, width: int = 64, stem: str = "imagenet",
                 pretrained=None):
        super().__init__()
        if not (arch.startswith("resnet") or arch.startswith("resnext") or arch.startswith("wide_resnet")):
            raise R2CNNError(f"{arch!r} is not a torchvision ResNet")
        if stem not in RESNET_STEMS:
            raise R2CNNError(f"ResNet stem must be one of {RESNET_STEMS}, not {stem!r}")
        if pretrained and (width != 64 or stem != "imagenet"):
            raise R2CNNError("ImageNet weights need the torchvision layout (width 64, stem 'imagenet')")
        net = torchvision.models.get_model(arch, weights=None)
        if width != 64:
            self._narrow(net, width)
        if stem == "small":
            net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 3, stride=2, padding=1, bias=False)
            net.maxpool = nn.Identity()
        else:
            _replace_first_conv(net, in_channels)
        if width != 64 or stem != "imagenet":
            self._init_like_torchvision(net)
        self.out_features = _strip_head(net)
        # what the weights were initialised from, for the run's log (None: random initialisation)
        self.pretrained_source = load_pretrained(net, pretrained, arch) if pretrained else None
        self.net = net
        self.c2_channels = _stage_channels(net.layer1)

    @staticmethod
    def _narrow(net: nn.Module, width: int) -> None:
        """Rebuild every stage with ``width * 2**i`` planes using torchvision's own ``_make_layer``."""
        block = type(net.layer1[0])
        counts = [len(getattr(net, f"layer{i}")) for i in range(1, 5)]
        net.inplanes = width
        net.conv1 = nn.Conv2d(net.conv1.in_channels, width, 7, stride=2, padding=3, bias=False)
        net.bn1 = nn.BatchNorm2d(width)
        for i, n in enumerate(counts):
            setattr(net, f"layer{i + 1}", net._make_layer(block, width * 2 ** i, n, stride=1 if i == 0 else 2))
        net.fc = nn.Linear(width * 8 * block.expansion, net.fc.out_features)

    @staticmethod
    def _init_like_torchvision(net: nn.Module) -> None:
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def c2(self, image: torch.Tensor) -> torch.Tensor:
        n = self.net
        return n.layer1(n.maxpool(n.relu(n.bn1(n.conv1(image)))))

    def head(self, c2: torch.Tensor) -> torch.Tensor:
        n = self.net
        return torch.flatten(n.avgpool(n.layer4(n.layer3(n.layer2(c2)))), 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.c2(image))


def _stage_channels(stage: nn.Sequential) -> int:
    last = stage[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


class TorchvisionBackbone(nn.Module):
    """Any torchvision classification model by name, first convolution adapted to C channels, head removed."""

    def __init__(self, arch: str, in_channels: int = 1, pretrained=None):
        super().__init__()
        try:
            net = torchvision.models.get_model(arch, weights=None)
        except ValueError as e:
            raise R2CNNError(f"unknown torchvision model {arch!r}") from e
        _replace_first_conv(net, in_channels)
        self.out_features = _strip_head(net)
        self.pretrained_source = load_pretrained(net, pretrained, arch) if pretrained else None
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.net(image), 1)


def create_backbone(arch: str, in_channels: int = 1, *, width: int = 64, stem: str = "imagenet", pretrained=None,
                    dropout: float = 0.5) -> nn.Module:
    """``arch``: ``"sketchanet"``, ``"lenet"``, a torchvision ResNet name (width/stem options apply) or any
    torchvision model."""
    if arch == "lenet":
        from r2cnn.models.early import LeNet
        if pretrained:
            raise R2CNNError("LeNet has no ImageNet weights; load a checkpoint instead")
        return LeNet(in_channels)
    if arch == "sketchanet":
        if pretrained:
            raise R2CNNError("Sketch-a-Net v2 has no ImageNet weights; load a checkpoint instead")
        return SketchANet(in_channels, dropout)
    if arch not in torchvision_archs():
        raise R2CNNError(f"unknown backbone {arch!r}: use 'sketchanet' or a torchvision model name")
    if arch.startswith(("resnet", "resnext", "wide_resnet")):
        return ResNetBackbone(arch, in_channels, width, stem, pretrained)
    if width != 64 or stem != "imagenet":
        raise R2CNNError(f"width and stem options apply to ResNets only, not {arch!r}")
    return TorchvisionBackbone(arch, in_channels, pretrained)
