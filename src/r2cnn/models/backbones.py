"""CNN backbones: images ``(B, C, H, W)`` -> global features ``(B, D)`` (``backbone.out_features = D``).

- :class:`SketchANet`: Sketch-a-Net v2 (Yu et al., "Sketch-a-Net: A Deep Neural Network that Beats Humans",
  IJCV 2017), single-scale, C input channels (paper Table 1: "Sketch-a-Net v2 (ours)").
- :class:`LeNet`: LeCun et al. 1998 (``cnn-lenet``, one of Table 1's early deep baselines, quoted from Yu et al.'s
  evaluation, the paper's ref. [44]): two 5x5 convolutions (6 and 16 channels), each followed by a 2x2 max-pool,
  then fully connected 120 and 84. ReLU and max-pooling replace the original tanh and sub-sampling layers; an
  adaptive average pool to 5x5 lets it take canvases other than 32x32.
- :class:`ResNetBackbone`: any torchvision ResNet family model (resnet18/34/50/101/152, resnext*, wide_resnet*)
  with the first convolution adapted to C channels, an optional narrow width and a small-image stem (for the
  CPU preset), split into ``stem`` (conv1 .. layer1 = the paper's C2 block) and ``rest`` so that the Table 2
  ablations can act on the C2 output.
- :class:`TorchvisionBackbone`: any other torchvision classification model by name (first convolution adapted,
  classification head removed); e.g. ``cnn-alexnet``, Table 1's "AlexNet-Sketch" (AlexNet trained on sketches;
  "AlexNet-SVM", ImageNet features + SVM, is a :mod:`r2cnn.classic` row).

ImageNet weights are never downloaded: ``pretrained`` is as in :mod:`r2cnn.pretrained`, which adapts and loads
torchvision networks for the backbones here and for :mod:`r2cnn.classic`.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from r2cnn.errors import R2CNNError
from r2cnn.model_specs import torchvision_archs
from r2cnn.pretrained import load_pretrained, replace_first_conv, strip_head, torchvision_trunk


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


class LeNet(nn.Module):
    """LeNet-5 feature extractor: images ``(B, C, H, W)`` (H, W >= 32; paper: 32) -> ``(B, 84)``."""

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),   # C1, S2
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),            # C3, S4
            nn.AdaptiveAvgPool2d(5),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),   # C5
                                nn.Linear(120, 84), nn.ReLU(inplace=True))                          # F6
        self.out_features = 84

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(image))


RESNET_STEMS = ("imagenet", "small")


class ResNetBackbone(nn.Module):
    """A torchvision ResNet (``arch`` = resnet18/34/50/..., resnext*, wide_resnet*) as a feature extractor.

    - ``width``: channels of the first stage (64 in torchvision; stages double it). Narrow widths are for CPU.
    - ``stem``: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool: C2 = layer1 at 1/4 resolution, 56x56 for 224) or
      ``"small"`` (3x3/2 conv, no max-pool: layer1 at 1/2 resolution, for small canvases such as 64x64).
    - ``pretrained``: see :func:`r2cnn.pretrained.load_pretrained` (only with the torchvision layout: width 64, imagenet stem).

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
            replace_first_conv(net, in_channels)
        if width != 64 or stem != "imagenet":
            self._init_like_torchvision(net)
        self.out_features = strip_head(net)
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
        self.net, self.out_features, self.pretrained_source = torchvision_trunk(arch, in_channels, pretrained)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.net(image), 1)


def create_backbone(arch: str, in_channels: int = 1, *, width: int = 64, stem: str = "imagenet", pretrained=None,
                    dropout: float = 0.5) -> nn.Module:
    """``arch``: ``"sketchanet"``, ``"lenet"``, a torchvision ResNet name (width/stem options apply) or any
    torchvision model."""
    if arch == "lenet":
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
