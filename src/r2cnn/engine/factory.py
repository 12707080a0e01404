"""Build the pieces a run is made of from its config (a preset dict plus overrides, as stored in checkpoints).

One place for this so that ``train``, ``evaluate``, ``predict`` and the benchmarks all construct the same
model and transforms from the same config.
"""

from __future__ import annotations

import torch
from torch import nn

from r2cnn.engine.checkpoint import load_checkpoint


def build_model(config: dict, num_classes: int) -> nn.Module:
    """``r2cnn.models.create(config["model"], num_classes, **config["model_options"])``."""
    from r2cnn import models

    return models.create(config["model"], num_classes, **dict(config.get("model_options") or {}))


def build_transform(config: dict, train: bool):
    """The preset's training transform (augmentation) or its evaluation transform (normalise only, plus the
    stroke-order change of the Random-Stroke-Order ablation when the preset has one)."""
    from r2cnn.data.transforms import make_transform

    return make_transform(train, **dict(config.get("transform" if train else "eval_transform") or {}))


def load_model(checkpoint: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The trained model of a checkpoint, in eval mode on ``device``, and the checkpoint dict itself."""
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    model = build_model(ckpt["config"], len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


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
