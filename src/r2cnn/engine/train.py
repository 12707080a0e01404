"""Training loop for ``r2cnn train`` (single process or DDP under torchrun).

Reads top to bottom like torchvision's ``references/classification/train.py``: set-up (process group, seed,
store, model, loaders, optimiser, schedule, resume), then epochs of :func:`train_one_epoch`, each followed
by validation and checkpoints. Model selection uses the validation split only; the test split is never
read here.

Resume: everything a step depends on is in the checkpoint (weights, optimiser, schedule, GradScaler,
the torch/numpy/python/cuda generators, epoch, step and the number of batches already taken from the
current epoch). The loader's sample order and augmentation are functions of (seed, epoch, index), and its
sampler can skip the batches already consumed, so a run killed at any point and resumed from ``last.pt``
replays the steps an uninterrupted run takes: the same batches and random draws, the weights equal to float
rounding (tests/test_engine.py). Runs with a time budget
(``max_minutes``) stop on the clock and are therefore not reproducible step for step.
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from r2cnn.engine import distributed as dist_utils
from r2cnn.engine.checkpoint import (CHECKPOINT_FORMAT, load_checkpoint, model_file, rng_state, save_atomic,
                                     set_rng_state)
from r2cnn.engine.clock import Clock
from r2cnn.engine.config import TrainOptions, make_config
from r2cnn.engine.evaluate import evaluate_model
from r2cnn.engine.factory import build_model, build_transform, classifier_parameter_names, load_weights
from r2cnn.engine.log import RunLog
from r2cnn.engine.optim import build_optimizer, parse_schedule
from r2cnn.engine.precision import amp_dtype, autocast, denormals_flushed
from r2cnn.engine.progress import ProgressLines
from r2cnn.errors import R2CNNError
from r2cnn.version import __version__

__all__ = ["NonFiniteLoss", "TrainOptions", "check_run_dir", "init_from_checkpoint", "train", "train_one_epoch"]


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
            "format": CHECKPOINT_FORMAT, "version": __version__, "config": config, "classes": classes,
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
