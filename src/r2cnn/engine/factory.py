"""Build the pieces a run is made of from its config (a preset dict plus overrides, as stored in checkpoints).

One place for this so that ``train``, ``evaluate``, ``predict`` and the benchmarks all construct the same
model and transforms from the same config.
"""

from __future__ import annotations

import torch
from torch import nn

from r2cnn.engine.checkpoint import load_checkpoint
from r2cnn.errors import R2CNNError


def build_model(config: dict, num_classes: int, *, pretrained: bool = True) -> nn.Module:
    """``r2cnn.models.create(config["model"], num_classes, **config["model_options"])``.

    ``pretrained=False`` leaves out the ``pretrained`` option (ImageNet weights): for a model whose own trained
    weights are loaded right after, so that a checkpoint evaluates where the ImageNet file it started from is
    absent, and nothing is read only to be overwritten.
    """
    from r2cnn import models

    options = dict(config.get("model_options") or {})
    if not pretrained:
        options.pop("pretrained", None)
    return models.create(config["model"], num_classes, **options)


def build_transform(config: dict, train: bool):
    """The preset's training transform (augmentation) or its evaluation transform (normalise only, plus the
    stroke-order change of the Random-Stroke-Order ablation when the preset has one)."""
    import inspect

    from r2cnn.data.transforms import make_transform

    key = "transform" if train else "eval_transform"
    options = dict(config.get(key) or {})
    known = [name for name in inspect.signature(make_transform).parameters if name != "train"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise R2CNNError(f"{key} option {unknown[0]} is not one of {', '.join(known)}")
    return make_transform(train, **options)


def load_model(checkpoint: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The trained model of a checkpoint, in eval mode on ``device``, and the checkpoint dict itself."""
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    try:  # the options are checked (sizes bounded) before anything is allocated
        model = build_model(ckpt["config"], len(ckpt["classes"]), pretrained=False)
    except R2CNNError as e:
        raise R2CNNError(f"{checkpoint}: {e}") from None
    load_weights(model, ckpt["model"], checkpoint)
    return model.to(device).eval(), ckpt


def load_weights(model: nn.Module, state: dict, source) -> None:
    """``model.load_state_dict(state)``; weights that do not fit (another architecture or class count than the
    checkpoint's config says) are a one-line error naming ``source``."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # torch lists every mismatched tensor, over many lines
        raise R2CNNError(f"{source}: its weights do not fit the model its config describes (tensor shapes "
                         f"differ)") from e
    missing, unexpected = result.missing_keys, result.unexpected_keys
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise R2CNNError(f"{source}: its weights do not fit the model its config describes ({len(missing)} "
                         f"missing, {len(unexpected)} unexpected tensors, e.g. {example})")


def classifier_parameter_names(model: nn.Module) -> set[str]:
    """Names (in ``model.state_dict()``) of the final classification layer's tensors.

    Uses ``model.get_classifier()`` when the model has it (timm's convention), else the last ``nn.Linear``.
    """
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if head is None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else None
    if head is None:
        return set()
    for prefix, module in model.named_modules():
        if module is head:
            return {f"{prefix}.{k}" if prefix else k for k in module.state_dict()}
    return set()

