"""Training loop for ``r2cnn train`` (single process or DDP under torchrun).

Reads top to bottom like torchvision's ``references/classification/train.py``: set-up (process group, seed,
store, model, loaders, optimiser, schedule, resume), then epochs of :func:`train_one_epoch`, each followed
by validation and checkpoints. Model selection uses the validation split only; the test split is never
read here.

Exact resume: everything a step depends on is in the checkpoint (weights, optimiser, schedule, GradScaler,
the torch/numpy/python/cuda generators, epoch, step and the number of batches already taken from the
current epoch). The loader's sample order and augmentation are functions of (seed, epoch, index), and its
sampler can skip the batches already consumed, so a run killed at any point and resumed from ``last.pt``
replays exactly the steps an uninterrupted run takes (bit-identical on CPU). Runs with a time budget
(``max_minutes``) stop on the clock and are therefore not reproducible step for step.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import r2cnn
from r2cnn.engine import distributed as dist_utils
from r2cnn.engine.checkpoint import (CHECKPOINT_FORMAT, load_checkpoint, model_file, rng_state, save_atomic,
                                     set_rng_state, to_plain)
from r2cnn.engine.evaluate import evaluate_model
from r2cnn.engine.factory import build_model, build_transform, classifier_parameter_names, load_weights
from r2cnn.engine.log import RunLog
from r2cnn.engine.precision import amp_dtype, autocast, denormals_flushed
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
    amp: str | None = None  # "bf16" | "fp16" | "none"; CUDA only
    tensorboard: bool = False
    checkpoint_every: int = 0  # also write last.pt every N steps (0: at epoch ends only)
    log_every: int = 10
    progress: bool | None = None  # tqdm's disable=None: bars only on a terminal
    # a progress line on stdout every N steps (ProgressLines); None: when stdout is not a terminal (and progress
    # is None), every PROGRESS_STEPS steps or PROGRESS_SECONDS seconds, whichever comes first; 0: never
    print_every: int | None = None
    config_overrides: dict = field(default_factory=dict)


class LRSchedule:
    """Learning-rate factor for ``LambdaLR``: linear warm-up then ``kind`` ("constant" or "cosine" to 0).

    Progress is the larger of step/total_steps and the fraction of the time budget used, so that a run
    stopped by the clock still anneals. A callable object, not a closure, so ``LambdaLR.state_dict`` saves
    its fields (total_steps, time_fraction) in the checkpoint.
    """

    def __init__(self, kind: str, total_steps: int, warmup_steps: int = 0):
        if kind not in ("constant", "cosine"):
            raise R2CNNError(f"lr_schedule must be 'constant' or 'cosine', not {kind!r}")
        self.kind, self.total_steps, self.warmup_steps = kind, max(int(total_steps), 1), int(warmup_steps)
        self.time_fraction = 0.0

    def __call__(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.kind == "constant":
            return warm
        progress = min(1.0, max(step / self.total_steps, self.time_fraction))
        return warm * 0.5 * (1.0 + math.cos(math.pi * progress))


def parse_schedule(spec, total_steps: int) -> LRSchedule:
    """A preset's ``lr_schedule``: None/"none"/"constant", "cosine", or {"name": ..., "warmup": steps or fraction}."""
    if spec is None or spec == "none":
        spec = "constant"
    if isinstance(spec, str):
        return LRSchedule(spec, total_steps)
    warmup = spec.get("warmup", 0) or 0
    warmup = int(round(warmup * total_steps)) if isinstance(warmup, float) and warmup < 1 else int(warmup)
    return LRSchedule(spec.get("name", spec.get("kind", "constant")), total_steps, warmup)


# Entries a preset may leave out; the value here applies then. ``--set`` and a spec's overrides may add them.
OPTIONAL_ENTRIES = {
    # learning rate of the RNN (the parameters under ``encoder.``: the attention encoder of R2CNN and its
    # relatives, the sequence branch of late fusion) as a multiple of ``lr``; the CNN keeps ``lr``
    "encoder_lr_scale": 1.0,
}


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
        isinstance(v, dict) and (v.get("warmup") is None or (_is_number(v["warmup"]) and v["warmup"] >= 0))),
        'constant, cosine or {"name": ..., "warmup": steps or fraction >= 0}'),
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


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def init_from_checkpoint(model: nn.Module, path: str) -> list[str]:
    """Copy a checkpoint's weights into ``model`` except the classifier (pre-training on QuickDraw, then
    fine-tuning on TU-Berlin, paper Sec. 4.2). Returns the names left at their fresh initialisation."""
    source = load_checkpoint(path)["model"]
    target = model.state_dict()
    skip = classifier_parameter_names(model)
    loaded = {k: v for k, v in source.items() if k in target and k not in skip and v.shape == target[k].shape}
    missing = sorted(set(target) - set(loaded))
    if not loaded:
        raise R2CNNError(f"{path}: no weights match this model (different architecture?)")
    model.load_state_dict(loaded, strict=False)
    return missing


class NonFiniteLoss(R2CNNError):
    """The loss became NaN or infinite; training stops and the last good checkpoint is kept."""


def train(opts: TrainOptions) -> dict:
    """Run (or resume) a training run into ``opts.out``; returns the final validation summary and paths.

    Subnormal floats are flushed to zero while it runs (:func:`r2cnn.engine.precision.denormals_flushed`).
    """
    with denormals_flushed():
        return _train_in(opts)


# What a run writes into its folder (``--overwrite`` removes these and nothing else).
RUN_FILES = ("log.jsonl", "last.pt", "best.pt", "tensorboard")


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> list[Path]:
    """Refuse to train into a folder holding an earlier run unless ``resume`` or ``overwrite`` says what to do
    with it. Returns the earlier run's files (for ``overwrite`` to remove)."""
    if resume and overwrite:
        raise R2CNNError("--resume continues the run in --out and --overwrite starts it afresh: give one of them")
    if run_dir.exists() and not run_dir.is_dir():
        raise R2CNNError(f"--out {run_dir}: a file is in the way (the run folder would go there)")
    earlier = [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
    earlier += sorted(run_dir.glob(".*.pt.*.tmp"))  # a checkpoint write cut short by a kill
    if earlier and not resume and not overwrite:
        raise R2CNNError(f"--out {run_dir} already holds a run ({', '.join(p.name for p in earlier)}): continue it "
                         f"with --resume, replace it with --overwrite, or choose another --out")
    return earlier if overwrite else []


def _remove(paths: list[Path]) -> None:
    import shutil

    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _check_resume_budget(opts: TrainOptions, config: dict, last_path: Path) -> None:
    """A resumed run keeps its length: ``--steps``/``--epochs`` other than the stored ones is a one-line error
    instead of being ignored (a run stored at 20 steps would stop at 20 under ``--steps 25`` without a word)."""
    stored = f"{config['steps']} steps" if config.get("steps") else f"{config.get('epochs')} epochs"
    asked = (f"--steps {opts.steps}" if opts.steps is not None and opts.steps != config.get("steps") else
             f"--epochs {opts.epochs}" if opts.epochs is not None and (config.get("steps") or
                                                                        opts.epochs != config.get("epochs")) else None)
    if asked:
        raise R2CNNError(f"--resume: {last_path} is a run of {stored}, and a resumed run keeps its length (its "
                         f"learning-rate schedule and data order depend on it), so {asked} cannot apply; to train "
                         f"further, start a new run from it: --init-from {last_path} {asked}")


def _train_in(opts: TrainOptions) -> dict:
    run_dir = Path(opts.out)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    earlier = check_run_dir(run_dir, opts.resume, opts.overwrite)
    ckpt = None
    if opts.resume:
        if not last_path.exists():
            raise R2CNNError(f"--resume: {last_path} does not exist (nothing to resume)")
        ckpt = load_checkpoint(last_path, training_state=True)
        config = ckpt["config"]  # the run continues exactly as configured; only runtime options may change
        _check_resume_budget(opts, config, last_path)
    else:
        config = make_config(opts)
    # Every rank has checked the folder before this rendezvous; only rank 0 clears it, after.
    info, device = dist_utils.init_distributed(opts.device)
    try:
        if info.is_main:
            _remove(earlier)
            run_dir.mkdir(parents=True, exist_ok=True)  # now, not after the data and model are ready
        if ckpt is not None and ckpt["extra"].get("world_size") != info.world_size:
            raise R2CNNError(f"--resume: {last_path} was written by {ckpt['extra'].get('world_size')} processes; "
                             f"resume it with the same number (the position in the epoch depends on it)")
        return _train(opts, config, ckpt, info, device, run_dir, last_path, best_path)
    finally:
        dist_utils.cleanup()


def _train(opts, config, ckpt, info, device, run_dir, last_path, best_path) -> dict:
    from r2cnn.data.loader import make_loader
    from r2cnn.data.store import SketchStore

    seed_everything(config["seed"])
    store = SketchStore(opts.data)
    classes = list(store.classes)
    if ckpt is not None and list(ckpt["classes"]) != classes:
        raise R2CNNError(f"--resume: the store {opts.data} has other classes than {last_path}")

    # resuming or --init-from: a checkpoint's weights replace the ImageNet ones, whose file is then not needed
    model = build_model(config, len(classes), pretrained=ckpt is None and not config.get("init_from"))
    loaded = sorted({m.pretrained_source for m in model.modules() if getattr(m, "pretrained_source", None)})
    if loaded and info.is_main:
        print(f"pretrained weights: {', '.join(loaded)}")
    if config.get("init_from") and ckpt is None:
        fresh = init_from_checkpoint(model, config["init_from"])
        if info.is_main:
            print(f"initialised from {config['init_from']} (fresh: {', '.join(fresh) or 'nothing'})")
    model.to(device)
    bare = model
    if info.enabled:
        model = dist_utils.convert_sync_batchnorm(model, device)
        bare = model
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    batch_size = int(config["batch_size"])
    workers = int(opts.workers if opts.workers is not None else config.get("num_workers") or 0)
    loader_args = dict(batch_size=batch_size, num_workers=workers, raster_size=bare.raster_size,
                       raster_eps=bare.raster_eps, rank=info.rank, world_size=info.world_size,
                       fold=config.get("fold"))
    train_loader = make_loader(store, "train", transform=build_transform(config, train=True), shuffle=True,
                               seed=config["seed"], drop_last=True, **loader_args)
    valid_loader = make_loader(store, "valid", transform=build_transform(config, train=False), **loader_args)
    for loader in (train_loader, valid_loader):
        # DataLoader draws its workers' base seed from this generator instead of the global one, so starting
        # an epoch (or a validation pass) does not shift the dropout stream: needed for exact resume.
        # Augmentation is seeded from (seed, epoch, index) by the loader, not from the base seed.
        loader.generator = torch.Generator().manual_seed(config["seed"])
    if len(store.indices("valid", fold=config.get("fold"))) == 0:
        raise R2CNNError(f"{opts.data}: the validation split is empty; best.pt is chosen on it (prepare the store "
                         f"with a validation part: a valid=PATH source, or --split-sizes TRAIN,VALID,TEST with "
                         f"VALID > 0, which a train=PATH source gives up when no source has validation records)")
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise R2CNNError(f"{opts.data}: the train split has fewer sketches than one global batch "
                         f"({batch_size} x {info.world_size})")
    if config.get("steps"):
        total_steps = int(config["steps"])
        epochs = math.ceil(total_steps / steps_per_epoch)
    else:
        epochs = int(config["epochs"])
        total_steps = epochs * steps_per_epoch

    optimizer = build_optimizer(config, bare)
    schedule = parse_schedule(config.get("lr_schedule"), total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    dtype = amp_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    start_epoch, step, batch_in_epoch, best = 0, 0, 0, None
    if ckpt is not None:
        load_weights(bare, ckpt["model"], last_path)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, step, batch_in_epoch, best = ckpt["epoch"], ckpt["step"], ckpt["batch_in_epoch"], ckpt["best"]
        set_rng_state(ckpt["rng"])  # last: building the model and loaders above drew from the generators
        if info.is_main:
            print(f"resuming {last_path} at step {step} (epoch {start_epoch}, batch {batch_in_epoch}) with its "
                  f"stored config (preset {config.get('preset')})")
    log = RunLog(run_dir if info.is_main else None, tensorboard=opts.tensorboard and info.is_main,
                 resume_step=step if ckpt is not None else None)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        log.write("event", step=step, epoch=start_epoch, event="resume" if ckpt else "start",
                  world_size=info.world_size, config=config)

    def save(path: Path, epoch: int, batch_in_epoch: int, step: int) -> None:
        if not info.is_main:
            return
        state = {
            "format": CHECKPOINT_FORMAT, "version": r2cnn.__version__, "config": config, "classes": classes,
            "model": bare.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "epoch": epoch, "step": step, "batch_in_epoch": batch_in_epoch, "best": best, "rng": rng_state(),
            "extra": {"steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
                      "world_size": info.world_size},
        }
        save_atomic(state if path == last_path else model_file(state), path)  # best.pt: no optimiser state

    clock = Clock(config.get("max_minutes"), is_main=info.is_main)
    off_terminal = opts.progress is None and not sys.stdout.isatty()
    lines = ProgressLines(info.is_main and (off_terminal or bool(opts.print_every)), opts.print_every, total_steps,
                          step, clock)
    summary = None
    stopped_by = "steps"
    epoch = start_epoch
    for epoch in range(start_epoch, epochs):
        if step >= total_steps:  # resuming a run that already finished
            break
        train_loader.batch_sampler.set_epoch(epoch)
        if batch_in_epoch:
            train_loader.batch_sampler.skip(batch_in_epoch)
        try:
            step, batch_in_epoch, out_of_time = train_one_epoch(
                model, train_loader, optimizer, scheduler, scaler, schedule, device, dtype, config, epoch, step,
                batch_in_epoch, steps_per_epoch, total_steps, clock, log, info, opts,
                checkpoint=lambda e, b, s: save(last_path, e, b, s), lines=lines)
        except NonFiniteLoss as e:
            log.write("event", step=step, epoch=epoch, event="non-finite loss", message=str(e))
            log.close()
            raise
        epoch_done = batch_in_epoch == steps_per_epoch
        # The bare module, not the DDP wrapper: ranks may hold different numbers of validation batches, and
        # DDP's forward would try to broadcast buffers in lockstep. The counts are all-reduced afterwards.
        metrics = evaluate_model(bare, valid_loader, len(classes), device, dtype,
                                 desc=f"valid {epoch}", progress=opts.progress if info.is_main else False)
        summary = metrics.summary()
        log.write("valid", step=step, epoch=epoch, **summary)
        if info.is_main:
            print(f"epoch {epoch} step {step}: valid top-1 {summary['top1']:.4f} top-5 {summary['top5']:.4f} "
                  f"({summary['count']} sketches)")
        if best is None or summary["top1"] > best["value"]:
            best = {"metric": "valid_top1", "value": summary["top1"], "step": step, "epoch": epoch}
            save(best_path, epoch + 1 if epoch_done else epoch, 0 if epoch_done else batch_in_epoch, step)
        save(last_path, epoch + 1 if epoch_done else epoch, 0 if epoch_done else batch_in_epoch, step)
        batch_in_epoch = 0
        if out_of_time:
            stopped_by = "time"
        if step >= total_steps or out_of_time:
            break
    log.write("event", step=step, epoch=epoch, event="done", stopped_by=stopped_by, best=best)
    log.close()
    return {"valid": summary, "best": best, "step": step, "last": str(last_path), "best_path": str(best_path),
            "classes": classes, "stopped_by": stopped_by, "rank": info.rank}


PROGRESS_STEPS, PROGRESS_SECONDS = 50, 30.0


class ProgressLines:
    """Off a terminal the progress bar is not drawn, so a log file or CI output would show nothing between
    epochs: there, a line every ``every`` steps (None: every :data:`PROGRESS_STEPS` steps or
    :data:`PROGRESS_SECONDS` seconds) with the loss, accuracy and speed since the last line and the time left for
    the whole run (wall time per step so far, validation included; the time budget caps it)."""

    def __init__(self, enabled: bool, every: int | None, total_steps: int, start_step: int, clock: "Clock"):
        self.enabled = enabled and every != 0
        self.every, self.total_steps, self.start_step, self.clock = every, total_steps, start_step, clock
        self.start = self.last = time.perf_counter()
        self.loss = self.correct = self.n = 0.0

    def update(self, step: int, epoch: int, loss_sum: float, correct: float, n: float) -> None:
        if not self.enabled:
            return
        self.loss, self.correct, self.n = self.loss + loss_sum, self.correct + correct, self.n + n
        now = time.perf_counter()
        due = step % self.every == 0 if self.every else (step % PROGRESS_STEPS == 0
                                                         or now - self.last >= PROGRESS_SECONDS)
        if not due and step < self.total_steps:
            return
        left = (self.total_steps - step) * (now - self.start) / max(step - self.start_step, 1)
        if self.clock.budget is not None:
            left = min(left, max(self.clock.budget - (now - self.clock.start), 0.0))
        print(f"step {step}/{self.total_steps} (epoch {epoch}): loss {self.loss / self.n:.4f}, accuracy "
              f"{self.correct / self.n:.4f}, {self.n / max(now - self.last, 1e-9):.0f} sketches/s, "
              f"{_eta(left)} left", flush=True)
        self.last, self.loss, self.correct, self.n = now, 0.0, 0.0, 0.0


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Clock:
    """Rank 0's wall clock against an optional budget; the fraction used travels with the step's all-reduce
    so that every rank stops (and anneals its learning rate) at the same step."""

    def __init__(self, max_minutes: float | None, is_main: bool):
        self.budget = max_minutes * 60.0 if max_minutes else None
        self.start = time.perf_counter()
        self.is_main = is_main

    def fraction(self) -> float:
        if self.budget is None or not self.is_main:
            return 0.0
        return (time.perf_counter() - self.start) / self.budget


def train_one_epoch(model, loader, optimizer, scheduler, scaler, schedule, device, dtype, config, epoch, step,
                    batch_in_epoch, steps_per_epoch, total_steps, clock, log, info, opts, checkpoint, lines):
    """One pass over the rest of the epoch (the loader already skips the ``batch_in_epoch`` batches done);
    ``lines``: the :class:`ProgressLines` printed where no bar is.

    Returns (step, batches done in this epoch, out_of_time).
    """
    from tqdm import tqdm

    model.train()
    grad_clip = config.get("grad_clip")
    n_batches = min(steps_per_epoch - batch_in_epoch, total_steps - step)
    window = {"loss": 0.0, "correct": 0.0, "n": 0.0, "t": time.perf_counter()}
    disable = True if (opts.progress is False or not info.is_main) else (None if opts.progress is None else False)
    bar = tqdm(total=n_batches, desc=f"epoch {epoch}", unit="batch", leave=False, disable=disable)
    out_of_time = False
    try:
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            with autocast(device, dtype):
                logits = model(batch)
                loss = F.cross_entropy(logits.float(), batch.labels)
            bs = batch.labels.numel()
            # One all-reduce per step gives every rank the global loss, accuracy and rank 0's clock.
            stats = torch.stack([loss.detach().float() * bs, (logits.argmax(1) == batch.labels).sum().float(),
                                 torch.tensor(float(bs), device=device),
                                 torch.tensor(clock.fraction(), device=device)])
            loss_sum, correct, n, time_fraction = dist_utils.all_reduce_sum(stats).tolist()
            if not math.isfinite(loss_sum):
                last = Path(opts.out) / "last.pt"
                kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint had been written yet"
                raise NonFiniteLoss(f"non-finite loss ({loss_sum / n}) at step {step + 1} (epoch {epoch}): training "
                                    f"stopped, {kept}; try a lower --lr, grad_clip or --amp none")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), float(grad_clip))
            scaler.step(optimizer)
            scaler.update()
            schedule.time_fraction = min(1.0, time_fraction)
            scheduler.step()
            step += 1
            batch_in_epoch += 1

            window["loss"] += loss_sum
            window["correct"] += correct
            window["n"] += n
            bar.update(1)
            lines.update(step, epoch, loss_sum, correct, n)
            elapsed = time.perf_counter() - window["t"]
            bar.set_postfix(loss=f"{loss_sum / n:.3f}", acc=f"{correct / n:.3f}",
                            sk_s=f"{window['n'] / max(elapsed, 1e-9):.0f}", refresh=False)
            if step % opts.log_every == 0:
                log.write("train", step=step, epoch=epoch, loss=window["loss"] / window["n"],
                          acc=window["correct"] / window["n"], lr=optimizer.param_groups[0]["lr"],
                          sketches_per_s=window["n"] / max(elapsed, 1e-9))
                window.update(loss=0.0, correct=0.0, n=0.0, t=time.perf_counter())
            if opts.checkpoint_every and step % opts.checkpoint_every == 0:
                checkpoint(epoch, batch_in_epoch, step)
            if time_fraction >= 1.0:
                out_of_time = True
                break
            if batch_in_epoch >= steps_per_epoch or step >= total_steps:
                break
    finally:
        bar.close()
    return step, batch_in_epoch, out_of_time
