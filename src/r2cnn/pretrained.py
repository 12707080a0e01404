"""torchvision networks as feature trunks, and their ImageNet weights (from torch's hub cache, never downloaded).

Below both :mod:`r2cnn.models.backbones` (the CNN of every model) and :mod:`r2cnn.classic` (AlexNet-SVM's fc7
features), which share it. ``pretrained`` is a file path, or torchvision weights by name (``"IMAGENET1K_V1"``,
``"IMAGENET1K_V2"``; ``True``/``"imagenet"`` for torchvision's default) to use the file torchvision would have
cached for them under ``torch.hub.get_dir()/checkpoints/``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from r2cnn.errors import MissingResource, R2CNNError, describe_load_failure


def replace_first_conv(model: nn.Module, in_channels: int) -> None:
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


def strip_head(model: nn.Module) -> int:
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


def is_weights_name(pretrained) -> bool:
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
    if is_weights_name(pretrained):
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


def torchvision_trunk(arch: str, in_channels: int = 1, pretrained=None) -> tuple[nn.Module, int, str | None]:
    """torchvision's ``arch`` with its first convolution taking ``in_channels`` and its classification head removed,
    and ``pretrained`` weights loaded when given -> ``(net, feature size, what was loaded or None)``."""
    try:
        net = torchvision.models.get_model(arch, weights=None)
    except ValueError as e:
        raise R2CNNError(f"unknown torchvision model {arch!r}") from e
    replace_first_conv(net, in_channels)
    out_features = strip_head(net)
    return net, out_features, load_pretrained(net, pretrained, arch) if pretrained else None
