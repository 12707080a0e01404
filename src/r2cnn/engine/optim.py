"""The optimiser (its parameter groups) and the learning-rate schedule of a training run, from its config."""

from __future__ import annotations

import math

import torch
from torch import nn

from r2cnn.engine.config import OPTIONAL_ENTRIES
from r2cnn.errors import R2CNNError


# The largest fraction of a run its warm-up may take (the schedule's ``warmup_cap``). A preset's warm-up is sized
# for a full run (cpu-*: 100 steps); a short run would spend most of its steps, or all of them, below the learning
# rate it asked for. `r2cnn prepare --builtin 720` then `r2cnn train --preset cpu-r2cnn --steps 35`: valid top-1
# 0.21 with the whole 100-step warm-up (672/24/24 sketches a class, the split before the built-in rule), 0.545 with
# 4 steps (576/72/72, 864 valid sketches); chance is 0.083.
WARMUP_CAP = 0.1


class LRSchedule:
    """Learning-rate factor for ``LambdaLR``: linear warm-up then ``kind`` ("constant" or "cosine" to 0).

    Progress is the larger of step/total_steps and the fraction of the time budget used, so that a run
    stopped by the clock still anneals. The warm-up lasts ``warmup_steps`` (:func:`parse_schedule` caps them at
    ``warmup_cap`` of the run's steps) and, with a time budget, ends at the latest once ``warmup_cap`` of the
    budget has passed. A callable object, not a closure, so ``LambdaLR.state_dict`` saves its fields
    (total_steps, warmup_steps, warmup_cap, time_fraction) in the checkpoint.
    """

    def __init__(self, kind: str, total_steps: int, warmup_steps: int = 0, warmup_cap: float = WARMUP_CAP):
        if kind not in ("constant", "cosine"):
            raise R2CNNError(f"lr_schedule must be 'constant' or 'cosine', not {kind!r}")
        self.kind, self.total_steps, self.warmup_steps = kind, max(int(total_steps), 1), int(warmup_steps)
        self.warmup_cap = float(warmup_cap)
        self.time_fraction = 0.0

    def __call__(self, step: int) -> float:
        warm = 1.0
        if self.warmup_steps:
            by_time = self.time_fraction / self.warmup_cap if self.warmup_cap > 0 else 0.0
            warm = min(1.0, max((step + 1) / self.warmup_steps, by_time))
        if self.kind == "constant":
            return warm
        progress = min(1.0, max(step / self.total_steps, self.time_fraction))
        return warm * 0.5 * (1.0 + math.cos(math.pi * progress))


def parse_schedule(spec, total_steps: int) -> LRSchedule:
    """A preset's ``lr_schedule``: None/"none"/"constant", "cosine", or ``{"name": ..., "warmup": steps or
    fraction, "warmup_cap": fraction}``.

    The rule for short runs: the warm-up lasts ``min(warmup, warmup_cap x total_steps)`` steps (rounded;
    ``warmup_cap`` defaults to :data:`WARMUP_CAP`, 10 %; 1 keeps the warm-up as given), and with a time budget it
    also ends once that fraction of the budget has passed. A preset's warm-up of 100 steps is thus kept whole in
    runs of 1,000 steps or more, and a 35-step run warms up for 4.
    """
    if spec is None or spec == "none":
        spec = "constant"
    if isinstance(spec, str):
        return LRSchedule(spec, total_steps)
    warmup = spec.get("warmup", 0) or 0
    warmup = int(round(warmup * total_steps)) if isinstance(warmup, float) and warmup < 1 else int(warmup)
    cap = spec.get("warmup_cap")
    cap = WARMUP_CAP if cap is None else float(cap)
    warmup = min(warmup, int(round(cap * max(int(total_steps), 1))))
    return LRSchedule(spec.get("name", spec.get("kind", "constant")), total_steps, warmup, cap)


def parameter_groups(model: nn.Module, lr: float, encoder_lr_scale: float = 1.0) -> list[dict]:
    """The optimiser's groups: one at ``lr``, or, with ``encoder_lr_scale != 1``, the ``encoder.`` parameters at
    ``lr * encoder_lr_scale`` and the rest at ``lr`` (a model without an encoder keeps one group)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    encoder = [p for n, p in named if n.startswith("encoder.")]
    if encoder_lr_scale == 1.0 or not encoder:
        return [{"params": [p for _, p in named], "lr": lr}]
    rest = [p for n, p in named if not n.startswith("encoder.")]
    return [{"params": rest, "lr": lr}, {"params": encoder, "lr": lr * encoder_lr_scale}]


def build_optimizer(config: dict, model: nn.Module) -> torch.optim.Optimizer:
    name = (config.get("optimizer") or "adam").lower()
    lr, wd = float(config["lr"]), float(config.get("weight_decay") or 0.0)
    params = parameter_groups(model, lr, float(config.get("encoder_lr_scale", OPTIONAL_ENTRIES["encoder_lr_scale"])))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    raise R2CNNError(f"unknown optimizer {name!r} (adam, adamw, sgd)")
