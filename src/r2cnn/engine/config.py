"""A training run's config: the options ``r2cnn train`` takes, and the preset merged with the overrides and checked.

:func:`make_config` gives what the checkpoint stores as ``config``; a resumed run reads it back instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from r2cnn.engine.checkpoint import to_plain
from r2cnn.errors import R2CNNError, did_you_mean


@dataclass
class TrainOptions:
    """What ``r2cnn train`` takes. ``None`` means "the preset's value"."""

    preset: str | None
    data: str
    out: str
    epochs: int | None = None
    steps: int | None = None  # total optimiser steps; overrides epochs
    max_minutes: float | None = None  # wall-clock budget (rank 0's clock); stops early, schedule follows time
    resume: bool = False
    overwrite: bool = False  # clear what an earlier run wrote into ``out`` (else such a folder is refused)
    seed: int = 0
    fold: int | None = None
    init_from: str | None = None
    device: str = "cpu"
    workers: int | None = None
    batch_size: int | None = None  # per process; the global batch is batch_size * world_size
    lr: float | None = None
    amp: str | None = None  # "bf16" | "fp16" | "none" (r2cnn.engine.precision: fp16 on CUDA only)
    tensorboard: bool = False
    checkpoint_every: int = 0  # also write last.pt every N steps (0: at epoch ends only)
    log_every: int = 10
    progress: bool | None = None  # tqdm's disable=None: bars only on a terminal
    # a progress line on stdout every N steps (ProgressLines); None: when stdout is not a terminal (and progress
    # is None), every PROGRESS_STEPS steps or PROGRESS_SECONDS seconds, whichever comes first; 0: never
    print_every: int | None = None
    config_overrides: dict = field(default_factory=dict)


# Entries a preset may leave out; the value here applies then. ``--set`` and a spec's overrides may add them.
OPTIONAL_ENTRIES = {
    # learning rate of the RNN (the parameters under ``encoder.``: the attention encoder of R2CNN and its
    # relatives, the sequence branch of late fusion) as a multiple of ``lr``; the CNN keeps ``lr``
    "encoder_lr_scale": 1.0,
}


def make_config(opts: TrainOptions) -> dict:
    """The preset dict merged with the command-line overrides: what the checkpoint stores as ``config``."""
    from r2cnn.presets import get_preset

    if opts.preset is None:
        raise R2CNNError("--preset is required (see `r2cnn presets`)")
    config = dict(get_preset(opts.preset))
    config = merge_config(config, _nested_overrides(config, opts.config_overrides, opts.preset))
    for key, value in (("batch_size", opts.batch_size), ("lr", opts.lr), ("epochs", opts.epochs),
                       ("amp", opts.amp), ("num_workers", opts.workers)):
        if value is not None:
            config[key] = value
    config.update(preset=opts.preset, steps=opts.steps, seed=opts.seed, fold=opts.fold,
                  init_from=opts.init_from, max_minutes=opts.max_minutes)
    check_config(config)
    return to_plain(config)


def _nested_overrides(config: dict, overrides: dict, preset: str) -> dict:
    """``--set`` pairs as a dict for :func:`merge_config`: ``KEY.SUB`` (``model_options.hidden``) sets one entry of
    a table. An entry the preset does not have (or a model option that does not exist) is an error that names
    the closest one and lists the others."""
    from r2cnn.models import DEFAULT_OPTIONS

    out: dict = {}
    for key, value in overrides.items():
        head, dot, sub = key.partition(".")
        entries = list(dict.fromkeys([*config, *OPTIONAL_ENTRIES]))
        if head not in entries:
            raise R2CNNError(f"--set {key}: not an entry of preset {preset}{did_you_mean(head, entries)} "
                             f"(entries: {', '.join(entries)})")
        if not dot:
            out[head] = value
            continue
        if not isinstance(config[head], dict):
            raise R2CNNError(f"--set {key}: {head!r} is not a table, so {key!r} cannot be set")
        known = list(dict.fromkeys([*config[head], *(DEFAULT_OPTIONS if head == "model_options" else ())]))
        if sub not in known:
            raise R2CNNError(f"--set {key}: {sub!r} is not an entry of {head}{did_you_mean(sub, known)} "
                             f"(entries: {', '.join(known)})")
        out[head] = {**(out[head] if isinstance(out.get(head), dict) else {}), sub: value}
    return out


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# entry -> (test, what it must be); a preset entry missing here is checked where it is used
_CONFIG_RULES = {
    "lr": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "weight_decay": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "batch_size": (lambda v: _is_count(v) and 1 <= v <= 65536, "an integer from 1 to 65536"),
    "epochs": (lambda v: _is_count(v) and v >= 1, "an integer >= 1"),
    "num_workers": (lambda v: _is_count(v) and 0 <= v <= 256, "an integer from 0 to 256"),
    "grad_clip": (lambda v: v is None or (_is_number(v) and v > 0), "null or a number > 0"),
    "optimizer": (lambda v: isinstance(v, str), "a name (adam, adamw, sgd)"),
    "amp": (lambda v: v in ("bf16", "fp16", "none"), "bf16, fp16 or none"),
    "encoder_lr_scale": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "model": (lambda v: isinstance(v, str), "a model name"),
    "model_options": (lambda v: isinstance(v, dict), "a JSON object"),
    "transform": (lambda v: isinstance(v, dict), "a JSON object"),
    "eval_transform": (lambda v: isinstance(v, dict), "a JSON object"),
    "lr_schedule": (lambda v: v is None or isinstance(v, str) or (
        isinstance(v, dict) and (v.get("warmup") is None or (_is_number(v["warmup"]) and v["warmup"] >= 0))
        and (v.get("warmup_cap") is None or (_is_number(v["warmup_cap"]) and 0 < v["warmup_cap"] <= 1))),
        'constant, cosine or {"name": ..., "warmup": steps or fraction >= 0, "warmup_cap": fraction in (0, 1]}'),
}


def check_config(config: dict) -> None:
    """One-line errors for config entries of the wrong type or range (from ``--set`` or a preset), before any
    of them reaches the code that would fail on it far from its cause."""
    for key, (ok, what) in _CONFIG_RULES.items():
        if key in config and not ok(config[key]):
            raise R2CNNError(f"config entry {key} must be {what}, not {config[key]!r}")


def merge_config(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` applied; a dict merges into a dict entry key by key, recursively, so that
    ``--set model_options='{"hidden": 64}'`` changes the hidden size and keeps the preset's canvas, width, stem."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged
