"""``r2cnn train``: train a preset on a prepared store (one process, or DDP under torchrun)."""

from __future__ import annotations

import argparse

HELP = "train a model from a preset on a prepared store (torchrun --nproc_per_node N -m r2cnn train ... for DDP)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="named configuration (see `r2cnn presets`); not needed with --resume")
    p.add_argument("--data", required=True, help="store directory made by `r2cnn prepare`")
    p.add_argument("--out", required=True, help="run directory: log.jsonl, last.pt, best.pt")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    length.add_argument("--steps", type=int, help="total optimiser steps instead of epochs")
    p.add_argument("--max-minutes", type=float, help="also stop after this wall-clock time (not reproducible)")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly where it stopped")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fold", type=int, help="k-fold stores (TU-Berlin): fold K is the test split")
    p.add_argument("--init-from", metavar="CKPT", help="start from a checkpoint's weights except the classifier")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--workers", type=int, help="data-loader worker processes (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="per process; global batch = this x processes")
    p.add_argument("--lr", type=float)
    p.add_argument("--amp", choices=["bf16", "fp16", "none"], help="mixed precision on CUDA (default: the preset's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", dest="overrides",
                   help='override a preset entry, e.g. --set grad_clip=1.0 --set model_options=\'{"hidden": 64}\'')
    p.add_argument("--tensorboard", action="store_true", help="also log to OUT/tensorboard (needs tensorboard)")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N", help="also write last.pt every N steps")
    p.add_argument("--log-every", type=int, default=10, metavar="N", help="log training metrics every N steps")


def options_from_args(args):
    import torch

    from r2cnn.engine.train import TrainOptions
    from r2cnn.errors import R2CNNError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise R2CNNError("--device cuda: no CUDA device is available")
    if not args.resume and not args.preset:
        raise R2CNNError("--preset is required (see `r2cnn presets`), unless --resume")
    for name in ("epochs", "steps", "batch_size", "workers", "checkpoint_every", "log_every"):
        value = getattr(args, name)
        if value is not None and value < (0 if name in ("workers", "checkpoint_every") else 1):
            raise R2CNNError(f"--{name.replace('_', '-')} must be positive, not {value}")
    return TrainOptions(preset=args.preset, data=args.data, out=args.out, epochs=args.epochs, steps=args.steps,
                        max_minutes=args.max_minutes, resume=args.resume, seed=args.seed, fold=args.fold,
                        init_from=args.init_from, device=device, workers=args.workers, batch_size=args.batch_size,
                        lr=args.lr, amp=args.amp, tensorboard=args.tensorboard,
                        checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                        config_overrides=parse_overrides(args.overrides))


def parse_overrides(items: list[str]) -> dict:
    """``KEY=JSON`` pairs (a value that is not JSON is taken as a string)."""
    import json

    from r2cnn.errors import R2CNNError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise R2CNNError(f"--set expects KEY=VALUE, not {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def run(args) -> int:
    from r2cnn.presets import get_preset

    preset = get_preset(args.preset) if args.preset else None
    if preset is not None and preset.get("runner", "neural") == "classic":
        return _run_classic(args, preset)
    from r2cnn.engine.train import train

    result = train(options_from_args(args))
    if result.get("rank", 0) == 0:
        best = result["best"]
        if best is not None:
            print(f"best valid top-1 {best['value']:.4f} at step {best['step']}: {result['best_path']}")
        print(f"last checkpoint: {result['last']}")
    return 0


def _run_classic(args, preset: dict) -> int:
    """Classic Table 1 rows (hand-crafted features + SVM): :class:`r2cnn.classic.runner.ClassicRunner`."""
    from pathlib import Path

    from r2cnn.classic.runner import ClassicRunner

    preset.update(parse_overrides(args.overrides))
    model = ClassicRunner().train(preset, Path(args.data), Path(args.out), seed=args.seed, fold=args.fold,
                                  epochs=args.epochs, steps=args.steps, max_minutes=args.max_minutes,
                                  init_from=args.init_from, resume=args.resume)
    print(f"classic model: {model}")
    return 0
